"""Which hook events each Claude Code version knows, and which of them reach a plugin's hooks.

Observed with the real CLI (tests/e2e/NOTES.md): the event-name list compiled into each
release, `claude plugin validate` on a plugin naming each event, and recording hooks
registered both ways. A plugin whose hooks.json names an event the installed version does
not know loses ALL its hooks, silently, so the plugin's hooks.json is generated per version.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

# Registering these hands worktree creation to the hook: never.
NEVER = frozenset({"WorktreeCreate", "WorktreeRemove"})

_BASE = (
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "Notification",
    "UserPromptSubmit",
    "UserPromptExpansion",
    "SessionStart",
    "SessionEnd",
    "Stop",
    "StopFailure",
    "SubagentStart",
    "SubagentStop",
    "PreCompact",
    "PostCompact",
    "PermissionRequest",
    "PermissionDenied",
    "Setup",
    "TeammateIdle",
    "TaskCreated",
    "TaskCompleted",
    "Elicitation",
    "ElicitationResult",
    "ConfigChange",
    "InstructionsLoaded",
    "CwdChanged",
    "FileChanged",
    "MessageDisplay",
)
# 2.1.332 adds these (the hook-event list inside its binary; `claude plugin validate` accepts them).
_ADDED_2_1_332 = ("PreModelSwitch", "PostModelSwitch", "DirectoryAdded")

#: Version -> the events elsabro registers on it (every known event except NEVER).
KNOWN_EVENTS: dict[tuple[int, int, int], tuple[str, ...]] = {
    (2, 1, 197): _BASE,
    (2, 1, 332): _BASE + _ADDED_2_1_332,
}
OLDEST = min(KNOWN_EVENTS)
ALL_KNOWN = frozenset(e for events in KNOWN_EVENTS.values() for e in events)

#: Events an installed plugin's hooks did not receive while settings hooks did (observed):
#: CwdChanged on both; on 2.1.332 also the session-start InstructionsLoaded (a `--plugin-dir`
#: plugin gets it, a marketplace-installed one does not: its hooks load too late).
PLUGIN_BLIND: dict[tuple[int, int, int], frozenset[str]] = {
    (2, 1, 197): frozenset({"CwdChanged"}),
    (2, 1, 332): frozenset({"CwdChanged", "InstructionsLoaded"}),
}

#: The events the shipped plugin's hooks.json names (plugin/hooks/hooks.json): those every
#: supported version knows (one unknown name silences the whole plugin on 2.1.197) and
#: delivers to plugins. One static list, valid whatever Claude Code is installed or later
#: upgraded to; the rest (the blind ones, events added later) go to settings hooks, which
#: elsabro rewrites for the installed version.
#: Also settings-routed: SessionStart, so that it is fired in the same early phase as the
#: settings-only InstructionsLoaded (an installed plugin's SessionStart came later than that on
#: 2.1.332, and the log is meant to start with session.started), and Setup and FileChanged,
#: which 2.1.332's binary lists with SessionStart and CwdChanged in one set (not observed here:
#: no scenario raises them in `-p`).
SETTINGS_PREFERRED = frozenset({"SessionStart", "Setup", "FileChanged"})
PLUGIN_EVENTS: tuple[str, ...] = tuple(
    e
    for e in KNOWN_EVENTS[OLDEST]
    if e not in SETTINGS_PREFERRED and not any(e in blind for blind in PLUGIN_BLIND.values())
)

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Profile:
    """What elsabro does on one Claude Code version."""

    version: tuple[int, int, int] | None  # None: claude not found or unreadable
    basis: tuple[int, int, int]  # the observed version whose event list applies

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "not found"

    @property
    def events(self) -> tuple[str, ...]:
        return KNOWN_EVENTS[self.basis]


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.search(text or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def profile(version: tuple[int, int, int] | None) -> Profile:
    """The newest observed version not newer than `version` (the oldest list for older or unknown).

    A version newer than every observed one gets the newest observed list: every name in it
    is known to that version too (Claude Code only adds events), so no hook is disabled.
    """
    if version is None:
        return Profile(None, OLDEST)
    basis = max((known for known in KNOWN_EVENTS if known <= version), default=OLDEST)
    return Profile(version, basis)


def installed_version(claude: str = "claude", timeout_s: float = 30.0) -> tuple[int, int, int] | None:
    """`claude --version`, parsed; None if there is no claude or it does not answer."""
    try:
        done = subprocess.run(
            [claude, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(done.stdout) if done.returncode == 0 else None
