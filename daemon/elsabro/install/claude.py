"""Registering elsabro's hook in Claude Code's settings files, for people who do not use plugins.

`install` merges one entry per hook event into `~/.claude/settings.json` (user) or
`<project>/.claude/settings.json` (project) and keeps everything else in the file;
running it again changes nothing. `uninstall` removes only elsabro's entries. Both write
atomically (temporary file, fsync, rename).

WorktreeCreate and WorktreeRemove are never registered: a hook on them replaces git
worktree creation, and a hook that only forwards events would break it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from elsabro.core import durable
from elsabro.core.errors import UsageError
from elsabro.ingest.hooks import TOPICS
from elsabro.install import versions

HOOK_SCRIPT_NAME = "elsabro-hook.sh"
PLUGIN_ID = "elsabro@elsabro"
# The events of the oldest supported Claude Code (2.1.197), in topic-table order: the default
# when the installed version is unknown.
EVENTS = [event for event in TOPICS if event in versions.KNOWN_EVENTS[versions.OLDEST]]
NEVER = tuple(sorted(versions.NEVER))
TIMEOUT_S = 5


def hook_script() -> Path:
    """The installed copy of the POSIX forwarder that ships inside the package."""
    return Path(str(resources.files("elsabro") / "data" / HOOK_SCRIPT_NAME)).resolve()


def settings_path(scope: str, project: Path, home: Path | None = None) -> Path:
    if scope == "user":
        return (home or Path.home()) / ".claude" / "settings.json"
    if scope == "project":
        return project / ".claude" / "settings.json"
    raise UsageError(f"unknown scope {scope!r}: use user or project")


def _is_ours(hook: Any) -> bool:
    return isinstance(hook, dict) and HOOK_SCRIPT_NAME in str(hook.get("command", ""))


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); fix it before installing hooks") from None
    if not isinstance(data, dict) or not isinstance(data.get("hooks", {}), dict):
        raise UsageError(f"{path} does not look like a Claude Code settings file")
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    durable.write_atomically(
        path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode(), mode=0o644
    )


def _without_ours(hooks: dict[str, Any]) -> dict[str, Any]:
    """The hooks table with elsabro's entries taken out, and groups they leave empty."""
    kept: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list) or not any(_group_has_ours(group) for group in groups):
            kept[event] = groups  # untouched, even an empty list the user wrote
            continue
        new_groups = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                remaining = [hook for hook in group["hooks"] if not _is_ours(hook)]
                if not remaining and group["hooks"]:
                    continue
                group = {**group, "hooks": remaining}
            new_groups.append(group)
        if new_groups:
            kept[event] = new_groups
    return kept


def _group_has_ours(group: Any) -> bool:
    return (
        isinstance(group, dict)
        and isinstance(group.get("hooks"), list)
        and any(map(_is_ours, group["hooks"]))
    )


def install(path: Path, script: Path | None = None, events: Iterable[str] | None = None) -> int:
    """Register the forwarder once for each of `events` (default EVENTS) in a settings file,
    and for no other event; returns how many events are registered."""
    chosen = [event for event in (EVENTS if events is None else events) if event not in NEVER]
    data = _load(path)
    command = f"sh {shlex.quote(str(script or hook_script()))}"
    hooks = _without_ours(data.get("hooks", {}))
    for event in chosen:
        entry = {"type": "command", "command": command, "timeout": TIMEOUT_S}
        hooks.setdefault(event, []).append({"hooks": [entry]})
    if hooks:
        data["hooks"] = hooks
    else:
        data.pop("hooks", None)
    _save(path, data)
    return len(chosen)


def settings_events(profile: versions.Profile, plugin: bool, already: Iterable[str] = ()) -> list[str]:
    """The events a settings file must register so that each event runs the forwarder once.

    With the plugin installed: only what the plugin does not carry (versions.PLUGIN_EVENTS:
    so CwdChanged, which Claude Code never sends to a plugin, InstructionsLoaded and the
    other session-start events, and the events newer than 2.1.197). Without it: everything
    the version knows. When the version is unknown (no
    `claude` on the PATH), events a newer Claude Code registered earlier are kept.
    """
    wanted = [e for e in profile.events if not (plugin and e in versions.PLUGIN_EVENTS)]
    if profile.version is None:
        keep = set(already) & versions.ALL_KNOWN
        wanted += sorted(e for e in keep if e not in wanted and not (plugin and e in versions.PLUGIN_EVENTS))
    return wanted


def uninstall(path: Path) -> bool:
    """Remove elsabro's entries only; True if there were any."""
    data = _load(path)
    hooks = data.get("hooks", {})
    kept = _without_ours(hooks)
    if kept == hooks:
        return False
    if kept:
        data["hooks"] = kept
    else:
        data.pop("hooks", None)
    _save(path, data)
    return True


def registration_counts(path: Path) -> dict[str, int]:
    """How many times a settings file runs elsabro's forwarder, per event."""
    try:
        hooks = _load(path).get("hooks", {})
    except UsageError:
        return {}
    counts: dict[str, int] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            continue
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                found = sum(1 for hook in group["hooks"] if _is_ours(hook))
                if found:
                    counts[event] = counts.get(event, 0) + found
    return counts


def registered_in(path: Path) -> list[str]:
    """The events for which a settings file runs elsabro's forwarder."""
    try:
        hooks = _load(path).get("hooks", {})
    except UsageError:
        return []
    return [
        event
        for event, groups in hooks.items()
        if isinstance(groups, list)
        and any(isinstance(g, dict) and any(_is_ours(h) for h in g.get("hooks", []) or []) for g in groups)
    ]


def plugin_installed(home: Path | None = None) -> bool:
    """True if Claude Code has the elsabro plugin installed for this user and not disabled."""
    record = (home or Path.home()) / ".claude" / "plugins" / "installed_plugins.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    plugins = data.get("plugins", data) if isinstance(data, dict) else {}
    names = [str(name) for name in plugins if str(name).split("@")[0] == "elsabro"]
    if not names:
        return False
    try:
        enabled = _load(settings_path("user", Path.cwd(), home)).get("enabledPlugins", {})
    except UsageError:
        enabled = {}
    # Disabled (`"elsabro@elsabro": false` in enabledPlugins) means its hooks do not run.
    return not isinstance(enabled, dict) or any(enabled.get(name, True) is not False for name in names)
