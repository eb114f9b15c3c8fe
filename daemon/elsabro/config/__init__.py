"""A project's configuration: its schema (schema.py), reading and merging the files
(files.py), and editing the project's file (edit.py)."""
