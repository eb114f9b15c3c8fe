"""Events going out: consumers reading the log in order (dispatch.py), their members with
retries and dead letters (members.py), the handlers, webhooks, connected subscribers and replay."""
