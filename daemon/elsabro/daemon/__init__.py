"""The daemon process (process.py), its routes (server.py) and HTTP framing (http.py), the
file watcher, and the small client the CLI and the Python API use to reach it (client.py)."""
