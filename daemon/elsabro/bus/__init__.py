"""The Python API: `EventBus` (api.py), embedded in the program or as a client of the daemon."""
