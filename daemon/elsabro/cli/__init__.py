"""The `elsabro` command: parses arguments, calls the library, prints (main.py registers the
commands of the other modules here)."""
