"""One open project: its log, ingest, spool drain and delivery wired together, and the
registry of the projects a daemon serves."""
