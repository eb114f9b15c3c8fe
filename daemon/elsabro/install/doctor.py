"""`elsabro doctor`: checks the whole chain a hook event travels, and says what to fix.

curl and sh present -> socket path usable -> daemon up (started if need be) -> the hook
registered (plugin or settings) -> a test event sent through the real forwarder lands
in the project's log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from elsabro.core.errors import ElsabroError
from elsabro.core.settings import Settings
from elsabro.daemon import client
from elsabro.install import claude


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, project: Path, home: Path | None = None) -> list[Check]:
    checks = [_tools(), _socket(settings)]
    checks.append(_daemon(settings))
    checks.append(_registered(project, home))
    if checks[-2].ok:
        checks.append(_round_trip(settings, project))
    return checks


def _tools() -> Check:
    missing = [tool for tool in ("sh", "curl") if shutil.which(tool) is None]
    if missing:
        return Check("tools", False, f"missing {', '.join(missing)}: the hook needs sh and curl on the PATH")
    return Check("tools", True, "sh and curl found")


def _socket(settings: Settings) -> Check:
    try:
        settings.check_socket_path()
    except ElsabroError as exc:
        return Check("socket path", False, str(exc))
    return Check("socket path", True, str(settings.socket_path))


def _daemon(settings: Settings) -> Check:
    try:
        client.ensure_daemon(settings)
        status = client.Client(settings, timeout_s=5.0).status()
    except ElsabroError as exc:
        return Check("daemon", False, f"{exc}; see the log in {settings.log_dir}")
    return Check("daemon", True, f"running, pid {status['pid']}")


def _registered(project: Path, home: Path | None) -> Check:
    if claude.plugin_installed(home):
        return Check("hooks", True, "the elsabro plugin is installed in Claude Code")
    for scope in ("user", "project"):
        path = claude.settings_path(scope, project, home)
        events = claude.registered_in(path)
        if events:
            missing = sorted(set(claude.EVENTS) - set(events))
            detail = f"registered in {path}" + (f" (missing: {', '.join(missing)})" if missing else "")
            return Check("hooks", not missing, detail)
    return Check(
        "hooks",
        False,
        "not registered: `claude plugin install elsabro@elsabro` or `elsabro hooks install --user`",
    )


def _round_trip(settings: Settings, project: Path) -> Check:
    """Send a test event through the real forwarder and find it in the log.

    A project with no `.elsabro/` yet gets none from a check: the event goes to a scratch
    project in elsabro's state directory instead, which proves the same chain.
    """
    where = ""
    if not (project / ".elsabro").is_dir():
        where = f" (a scratch project: {project} has no .elsabro/ yet, and a check creates none)"
        project = settings.state_dir / "doctor"
        project.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = f"doctor-{uuid.uuid4().hex[:12]}"
    payload = json.dumps({"hook_event_name": "ElsabroDoctor", "session_id": marker, "cwd": str(project)})
    env = {"ELSABRO_SOCKET": str(settings.socket_path), "CLAUDE_PROJECT_DIR": str(project), "PATH": _path()}
    try:
        subprocess.run(
            ["sh", str(claude.hook_script())], input=payload.encode(), env=env, timeout=10, check=False
        )
        found = _wait_for(settings, project, marker)
    except (OSError, subprocess.TimeoutExpired, ElsabroError) as exc:
        return Check("round trip", False, f"the test event did not arrive: {exc}")
    if not found:
        return Check("round trip", False, "the test event did not reach the log; see the daemon's log")
    return Check(
        "round trip", True, f"a test event (hook.elsabro_doctor) reached {project}/.elsabro/events{where}"
    )


def _path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


def _wait_for(settings: Settings, project: Path, marker: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    api = client.Client(settings, str(project), timeout_s=5.0)
    while time.monotonic() < deadline:
        if api.events({"correlation": marker, "limit": "1"}):
            return True
        time.sleep(0.05)
    return False
