"""Setting elsabro up beside Claude Code: the hook registration in settings.json (claude.py)
and `elsabro doctor` (doctor.py)."""
