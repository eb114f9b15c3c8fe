"""`elsabro doctor`: checks the whole chain a hook event travels, and says what to fix.

curl and sh present -> socket path usable -> daemon up (started if need be) -> the hook
registered (plugin or settings) -> a test event sent through the real forwarder lands
in the project's log -> the project's config is valid and, if it has handlers, trusted.
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

from elsabro.config import trust
from elsabro.core.errors import ConfigError, ElsabroError
from elsabro.core.settings import Settings
from elsabro.daemon import client
from elsabro.install import claude, routes, versions


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, project: Path, home: Path | None = None) -> list[Check]:
    checks = [_tools(), _socket(settings)]
    checks.append(_daemon(settings))
    daemon_up = checks[-1].ok
    checks.extend(_registered(project, home, versions.installed_version()))
    if daemon_up:
        checks.append(_round_trip(settings, project))
    checks.append(_config(settings, project, daemon_up))
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


def _registered(project: Path, home: Path | None, version: tuple[int, int, int] | None) -> list[Check]:
    """The Claude Code version, the routes, and each event registered exactly once."""
    found = routes.inspect(project, home, version)
    profile = found.profile
    label = "not found on the PATH" if version is None else profile.label
    checks = [Check("claude code", True, f"{label} (events of {'.'.join(map(str, profile.basis))})")]
    if not found.where:
        checks.append(
            Check(
                "hooks",
                False,
                "not registered: run ./install.sh, or `elsabro hooks install --user`",
            )
        )
        return checks
    routes_text = " + ".join("plugin" if r == "plugin" else f"settings {r}" for r in found.routes)
    checks.append(Check("hooks", True, f"{len(found.where)} events via {routes_text}"))
    doubled = found.duplicates()
    if doubled:
        names = sorted(doubled)
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        places = sorted({place for where in doubled.values() for place in where})
        if "plugin" in places:
            fix = "run `elsabro hooks install --user` (settings then keep only what the plugin lacks)"
        else:
            fix = "keep one: `elsabro hooks uninstall --project` (or remove the extra entries)"
        checks.append(
            Check(
                "duplicates",
                False,
                f"{len(names)} events registered more than once ({shown}) in {' and '.join(places)}: "
                f"each would be stored twice; {fix}",
            )
        )
    missing, unfit = found.missing(), found.unfit()
    if missing or unfit:
        parts = [f"not registered: {', '.join(missing)}"] if missing else []
        parts += [f"unknown to Claude Code {profile.label}: {', '.join(unfit)}"] if unfit else []
        checks.append(
            Check(
                "fit",
                False,
                "; ".join(parts)
                + f"; the registration does not fit Claude Code {label}: re-run ./install.sh",
            )
        )
    return checks


def _config(settings: Settings, project: Path, daemon_up: bool) -> Check:
    """Valid, trusted if it asks for handlers (config/trust.py), and what the daemon runs of it."""
    try:
        loaded = trust.load(project, settings.user_config_file, settings.state_dir)
    except ConfigError as exc:
        # Invalid: the daemon says what runs instead (the last good config, or nothing).
        return _running(settings, project) if daemon_up else Check("config", False, f"invalid: {exc}")
    except ElsabroError as exc:
        return Check("config", False, str(exc))
    untrusted = loaded.message(project)
    if untrusted:
        return Check("config", False, untrusted)
    if daemon_up:
        return _running(settings, project)
    return Check("config", True, "trusted" if loaded.needs_trust else "needs no trust (no handlers)")


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


def _running(settings: Settings, project: Path) -> Check:
    """Whether the daemon runs the project's config, or refuses it (and what runs instead)."""
    try:
        answer = client.Client(settings, str(project), timeout_s=5.0).call_json("GET", "/v1/subscriptions")
    except ElsabroError as exc:
        return Check("config", False, str(exc))
    config = answer.get("config") or {}
    problems = config.get("problems") or []
    if not problems:
        return Check("config", True, f"valid; {len(answer['subscriptions'])} subscriptions and endpoints run")
    running = (
        "the last good config keeps running"
        if config.get("running") == "last good config"
        else "no subscription or webhook runs"
    )
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return Check("config", False, f"invalid, {running}: {problems[0]}{more}; see `elsabro config check`")


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
