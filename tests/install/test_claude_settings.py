"""Registering elsabro's hook in Claude Code settings.json files: install, uninstall, detection.

Every file lives under tmp_path; the real HOME is never read or written.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from elsabro.core.errors import UsageError
from elsabro.install import claude

ALL_EVENTS = [
    "SessionStart",
    "SessionEnd",
    "Setup",
    "InstructionsLoaded",
    "UserPromptExpansion",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "PermissionRequest",
    "PermissionDenied",
    "Notification",
    "Elicitation",
    "ElicitationResult",
    "SubagentStart",
    "SubagentStop",
    "TaskCreated",
    "TaskCompleted",
    "TeammateIdle",
    "Stop",
    "StopFailure",
    "PreCompact",
    "PostCompact",
    "ConfigChange",
    "CwdChanged",
    "FileChanged",
    "MessageDisplay",
]
USER_HOOK = {"type": "command", "command": "~/bin/audit-bash.sh", "timeout": 30}
USER_SETTINGS: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "opus",
    "permissions": {
        "allow": ["Bash(npm run test:*)", "Read(~/.zshrc)"],
        "deny": ["Bash(curl:*)", "Read(./.env)"],
        "defaultMode": "acceptEdits",
    },
    "env": {"FOO": "bär", "EMPTY": ""},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [USER_HOOK]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
    "enabledPlugins": {"other@market": True},
}


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return tmp_path / "pkg" / "data" / claude.HOOK_SCRIPT_NAME


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    return claude.settings_path("user", tmp_path / "project", home=tmp_path / "home")


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ours(script: Path) -> dict[str, Any]:
    return {"type": "command", "command": f"sh {shlex.quote(str(script))}", "timeout": 5}


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- where -----------------------------------------------------------------------------


def test_settings_path_per_scope(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    assert claude.settings_path("user", project, home=home) == home / ".claude" / "settings.json"
    assert claude.settings_path("project", project, home=home) == project / ".claude" / "settings.json"
    with pytest.raises(UsageError):
        claude.settings_path("global", project, home=home)


def test_events_are_every_known_hook_event_and_never_the_worktree_ones() -> None:
    assert claude.EVENTS == ALL_EVENTS
    assert "WorktreeCreate" not in claude.EVENTS
    assert "WorktreeRemove" not in claude.EVENTS


# -- install ---------------------------------------------------------------------------


def test_install_into_missing_file_creates_it_with_one_entry_per_event(settings: Path, script: Path) -> None:
    assert not settings.parent.exists()

    count = claude.install(settings, script)

    assert count == len(ALL_EVENTS)
    assert read(settings) == {"hooks": {event: [{"hooks": [ours(script)]}] for event in ALL_EVENTS}}
    assert leftovers(settings) == []  # no temporary file left behind


def test_install_never_registers_worktree_events(settings: Path, script: Path) -> None:
    claude.install(settings, script)
    hooks = read(settings)["hooks"]
    assert "WorktreeCreate" not in hooks
    assert "WorktreeRemove" not in hooks


def test_install_with_default_script_points_at_the_packaged_forwarder(settings: Path) -> None:
    claude.install(settings)
    command = read(settings)["hooks"]["Stop"][0]["hooks"][0]["command"]
    assert command == f"sh {shlex.quote(str(claude.hook_script()))}"
    assert claude.hook_script().is_file()


def test_install_keeps_other_settings_and_the_users_own_hooks(settings: Path, script: Path) -> None:
    write(settings, USER_SETTINGS)

    claude.install(settings, script)

    after = read(settings)
    for key in USER_SETTINGS.keys() - {"hooks"}:
        assert after[key] == USER_SETTINGS[key], key
    assert list(after)[: len(USER_SETTINGS)] == list(USER_SETTINGS)
    hooks = after["hooks"]
    assert hooks["PreToolUse"] == [{"matcher": "Bash", "hooks": [USER_HOOK]}, {"hooks": [ours(script)]}]
    assert hooks["Stop"] == [
        {"hooks": [{"type": "command", "command": "notify-send done"}]},
        {"hooks": [ours(script)]},
    ]
    assert sorted(hooks) == sorted(ALL_EVENTS)
    for event in set(ALL_EVENTS) - {"PreToolUse", "Stop"}:
        assert hooks[event] == [{"hooks": [ours(script)]}], event


def test_install_twice_gives_the_identical_file(settings: Path, script: Path) -> None:
    write(settings, USER_SETTINGS)
    claude.install(settings, script)
    first = settings.read_bytes()

    assert claude.install(settings, script) == len(ALL_EVENTS)

    assert settings.read_bytes() == first


def test_install_again_with_a_moved_script_replaces_the_old_entries(settings: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old" / claude.HOOK_SCRIPT_NAME, tmp_path / "new" / claude.HOOK_SCRIPT_NAME
    claude.install(settings, old)
    claude.install(settings, new)

    assert read(settings)["hooks"] == {event: [{"hooks": [ours(new)]}] for event in ALL_EVENTS}


def test_install_into_empty_file_works(settings: Path, script: Path) -> None:
    settings.parent.mkdir(parents=True)
    settings.write_text("")
    claude.install(settings, script)
    assert claude.registered_in(settings) == ALL_EVENTS


@pytest.mark.parametrize("directory", ["plain", "with space", "o'brien"], ids=["plain", "space", "quote"])
def test_registered_command_runs_the_script_wherever_it_lives(
    settings: Path, tmp_path: Path, directory: str
) -> None:
    script = tmp_path / directory / claude.HOOK_SCRIPT_NAME
    script.parent.mkdir()
    script.write_text('echo "forwarder ran"\n')
    claude.install(settings, script)
    command = read(settings)["hooks"]["PreToolUse"][0]["hooks"][0]["command"]

    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)

    assert (ran.returncode, ran.stdout) == (0, "forwarder ran\n"), ran.stderr


# -- uninstall -------------------------------------------------------------------------


def test_uninstall_removes_only_elsabros_entries(settings: Path, script: Path) -> None:
    write(settings, USER_SETTINGS)
    claude.install(settings, script)

    assert claude.uninstall(settings) is True

    assert read(settings) == USER_SETTINGS
    assert claude.registered_in(settings) == []
    assert leftovers(settings) == []


def test_uninstall_keeps_a_users_hook_that_shares_a_group_with_elsabros(settings: Path, script: Path) -> None:
    mixed = {"hooks": {"Stop": [{"matcher": "", "hooks": [ours(script), USER_HOOK]}]}}
    write(settings, mixed)

    assert claude.uninstall(settings) is True

    assert read(settings) == {"hooks": {"Stop": [{"matcher": "", "hooks": [USER_HOOK]}]}}


def test_uninstall_drops_the_hooks_key_when_only_elsabros_were_there(settings: Path, script: Path) -> None:
    write(settings, {"model": "sonnet"})
    claude.install(settings, script)

    assert claude.uninstall(settings) is True

    assert read(settings) == {"model": "sonnet"}


def test_uninstall_of_a_file_with_only_elsabros_hooks_leaves_an_empty_object(
    settings: Path, script: Path
) -> None:
    claude.install(settings, script)
    assert claude.uninstall(settings) is True
    assert read(settings) == {}


NOTHING_OURS = {
    "no-hooks": {"model": "opus"},
    "user-hooks": USER_SETTINGS,
    "empty-hooks": {"hooks": {}},
    "user-group-with-no-hooks": {"hooks": {"Stop": [{"matcher": "x", "hooks": []}]}},
    "empty-event-list": {"hooks": {"Stop": [], "PreToolUse": [{"matcher": "Bash", "hooks": [USER_HOOK]}]}},
}


@pytest.mark.parametrize("content", NOTHING_OURS.values(), ids=list(NOTHING_OURS))
def test_uninstall_with_nothing_of_elsabros_returns_false_and_leaves_the_file_alone(
    settings: Path, content: dict[str, Any]
) -> None:
    write(settings, content)
    before = settings.read_bytes()

    assert claude.uninstall(settings) is False

    assert settings.read_bytes() == before


def test_uninstall_of_missing_file_returns_false_and_creates_nothing(settings: Path) -> None:
    assert claude.uninstall(settings) is False
    assert not settings.exists()


def test_uninstall_twice_returns_false_the_second_time(settings: Path, script: Path) -> None:
    claude.install(settings, script)
    assert claude.uninstall(settings) is True
    assert claude.uninstall(settings) is False


# -- registered_in ---------------------------------------------------------------------


def test_registered_in_lists_every_installed_event(settings: Path, script: Path) -> None:
    claude.install(settings, script)
    assert claude.registered_in(settings) == ALL_EVENTS


def test_registered_in_lists_only_events_that_run_elsabro(settings: Path, script: Path) -> None:
    write(
        settings,
        {
            "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [USER_HOOK]}],
                "Stop": [{"hooks": [USER_HOOK]}, {"hooks": [ours(script)]}],
                "SessionStart": [{"hooks": [ours(script)]}],
            }
        },
    )
    assert claude.registered_in(settings) == ["Stop", "SessionStart"]


def test_registered_in_lists_events_next_to_the_users_hooks(settings: Path, script: Path) -> None:
    write(settings, USER_SETTINGS)
    claude.install(settings, script)
    assert sorted(claude.registered_in(settings)) == sorted(ALL_EVENTS)


@pytest.mark.parametrize(
    "content", [None, {"model": "opus"}, USER_SETTINGS], ids=["missing", "no-hooks", "user-hooks-only"]
)
def test_registered_in_is_empty_without_elsabro(settings: Path, content: dict[str, Any] | None) -> None:
    if content is not None:
        write(settings, content)
    assert claude.registered_in(settings) == []


# -- files that are not settings ---------------------------------------------------------

NOT_SETTINGS = {
    "truncated": '{"hooks": {"Stop": [',
    "trailing-comma": '{"model": "opus",}\n',
    "not-json": "model = opus\n",
    "array": "[1, 2]\n",
    "hooks-is-a-list": '{"hooks": []}\n',
}


@pytest.mark.parametrize("text", NOT_SETTINGS.values(), ids=list(NOT_SETTINGS))
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_file_that_is_not_a_settings_object_is_refused_and_left_unchanged(
    settings: Path, script: Path, text: str, action: str
) -> None:
    settings.parent.mkdir(parents=True)
    settings.write_text(text)

    with pytest.raises(UsageError):
        if action == "install":
            claude.install(settings, script)
        else:
            claude.uninstall(settings)

    assert settings.read_text() == text
    assert leftovers(settings) == []


def test_registered_in_of_an_invalid_file_is_empty(settings: Path) -> None:
    settings.parent.mkdir(parents=True)
    settings.write_text("{oops")
    assert claude.registered_in(settings) == []


# -- plugin_installed --------------------------------------------------------------------

ELSABRO_RECORD = {
    "scope": "user",
    "installPath": "/home/dev/.claude/plugins/cache/elsabro/elsabro/0.1.0",
    "version": "0.1.0",
    "installedAt": "2025-11-20T10:00:00.000Z",
    "lastUpdated": "2025-11-20T10:00:00.000Z",
    "gitCommitSha": "3e5450b0000000000000000000000000000000000",
}
OTHER_RECORD = {**ELSABRO_RECORD, "installPath": "/home/dev/.claude/plugins/cache/market/other/1.0.0"}


def write_installed(home: Path, data: Any) -> None:
    write(home / ".claude" / "plugins" / "installed_plugins.json", data)


def test_plugin_installed_reads_the_real_installed_plugins_format(tmp_path: Path) -> None:
    write_installed(
        tmp_path,
        {
            "version": 2,
            "plugins": {
                "other@market": [copy.deepcopy(OTHER_RECORD)],
                "elsabro@elsabro": [copy.deepcopy(ELSABRO_RECORD)],
            },
        },
    )
    assert claude.plugin_installed(tmp_path) is True


PLUGINS_WITHOUT_ELSABRO = {
    "no-plugins": {"version": 2, "plugins": {}},
    "other-plugins": {"version": 2, "plugins": {"other@market": [OTHER_RECORD]}},
    "similar-name": {"version": 2, "plugins": {"elsabro-extras@market": [OTHER_RECORD]}},
}


@pytest.mark.parametrize("data", PLUGINS_WITHOUT_ELSABRO.values(), ids=list(PLUGINS_WITHOUT_ELSABRO))
def test_plugin_not_installed_when_the_record_does_not_name_elsabro(tmp_path: Path, data: Any) -> None:
    write_installed(tmp_path, data)
    assert claude.plugin_installed(tmp_path) is False


def test_plugin_not_installed_without_a_record(tmp_path: Path) -> None:
    assert claude.plugin_installed(tmp_path) is False


def test_plugin_not_installed_when_the_record_is_not_json(tmp_path: Path) -> None:
    record = tmp_path / ".claude" / "plugins" / "installed_plugins.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"version": 2, "plugins": {"elsabro@elsabro": [')
    assert claude.plugin_installed(tmp_path) is False
