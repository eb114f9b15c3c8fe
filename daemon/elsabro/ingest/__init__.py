"""How events come in from Claude Code: hook payloads become events (hooks.py), and the
spool keeps what hooks wrote while no daemon answered (spool.py)."""
