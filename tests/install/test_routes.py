"""Which events go to the plugin and which to settings, per Claude Code version, and what doctor says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elsabro.ingest.hooks import TOPICS, topic_for
from elsabro.install import claude, routes, versions
from support import REPO, World

V197, V332 = (2, 1, 197), (2, 1, 332)
NEW_IN_332 = {"DirectoryAdded", "PreModelSwitch", "PostModelSwitch"}


def test_each_version_gets_the_events_it_knows_and_never_the_worktree_ones() -> None:
    old, new = versions.profile(V197).events, versions.profile(V332).events
    assert len(old) == 28 and not NEW_IN_332 & set(old)
    assert set(new) == set(old) | NEW_IN_332
    assert not versions.NEVER & (set(old) | set(new))
    assert versions.profile((2, 1, 250)).events == old  # between two observed: the older list
    assert versions.profile((2, 2, 0)).events == new  # newer than all: the newest list
    assert versions.profile((1, 0, 0)).events == old
    assert versions.profile(None).events == old
    assert versions.parse_version("2.1.332 (Claude Code)") == V332
    assert versions.parse_version("no version here") is None


def test_the_shipped_plugin_names_only_events_every_version_knows_and_delivers_to_plugins() -> None:
    hooks = json.loads((REPO / "plugin" / "hooks" / "hooks.json").read_text())["hooks"]
    assert list(hooks) == list(versions.PLUGIN_EVENTS)
    for known in versions.KNOWN_EVENTS.values():
        assert set(hooks) <= set(known)  # one unknown name would disable the whole plugin on 2.1.197
    for blind in versions.PLUGIN_BLIND.values():
        assert not blind & set(hooks)
    assert "CwdChanged" not in hooks and "InstructionsLoaded" not in hooks


@pytest.mark.parametrize("version", [V197, V332])
def test_plugin_and_settings_split_the_events_without_overlap(version: tuple[int, int, int]) -> None:
    profile = versions.profile(version)
    rest = claude.settings_events(profile, plugin=True)
    assert not set(rest) & set(versions.PLUGIN_EVENTS)
    assert set(rest) | set(versions.PLUGIN_EVENTS) == set(profile.events)
    assert "CwdChanged" in rest
    assert (set(rest) >= NEW_IN_332) == (version == V332)
    assert claude.settings_events(profile, plugin=False) == list(profile.events)


def test_without_claude_on_the_path_events_a_newer_claude_registered_are_kept() -> None:
    unknown = versions.profile(None)
    kept = claude.settings_events(unknown, plugin=True, already=["DirectoryAdded", "CwdChanged", "Bogus"])
    assert "DirectoryAdded" in kept and "Bogus" not in kept
    assert not set(kept) & set(versions.PLUGIN_EVENTS)


def test_new_events_have_topics_and_unknown_ones_keep_the_passthrough() -> None:
    assert topic_for({"hook_event_name": "DirectoryAdded"}) == "directory.added"
    assert topic_for({"hook_event_name": "PreModelSwitch"}) == "model.switching"
    assert topic_for({"hook_event_name": "PostModelSwitch"}) == "model.switched"
    assert topic_for({"hook_event_name": "PreSkillShellCommand"}) == "hook.pre_skill_shell_command"
    for kind in ("agent_needs_input", "agent_completed"):
        assert (
            topic_for({"hook_event_name": "Notification", "notification_type": kind})
            == f"notification.{kind}"
        )
    assert set(versions.ALL_KNOWN) <= set(TOPICS)


def test_a_prompt_claude_code_submits_itself_is_told_apart_from_the_users() -> None:
    # The prompt 2.1.332 submits when a background subagent finishes (NOTES.md, verbatim start).
    notification = "<task-notification>\n<task-id>a763ec1a276d3b0bd</task-id>\n<status>completed</status>"
    assert (
        topic_for({"hook_event_name": "UserPromptSubmit", "prompt": notification})
        == "prompt.task_notification"
    )
    user = "Please explain <task-notification> tags"
    assert topic_for({"hook_event_name": "UserPromptSubmit", "prompt": user}) == "prompt.submitted"


def full_settings(path: Path) -> None:
    claude.install(path, events=versions.profile(V197).events)


def write_installed_plugin(home: Path) -> None:
    # The file Claude Code writes on `claude plugin install` (format observed with 2.1.197):
    # written by hand here so the duplicate check runs without the CLI.
    record = home / ".claude" / "plugins" / "installed_plugins.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"version": 2, "plugins": {"elsabro@elsabro": [{"scope": "user"}]}}))


def test_plugin_plus_full_settings_is_reported_as_duplicates(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    full_settings(claude.settings_path("user", project, home))
    write_installed_plugin(home)
    found = routes.inspect(project, home, V197)
    assert set(found.duplicates()) == set(versions.PLUGIN_EVENTS)
    assert found.missing() == [] and found.unfit() == []


def test_a_doubled_registration_makes_doctor_say_fix_and_exit_non_zero(world: World) -> None:
    user = claude.settings_path("user", world.project, world.home)
    full_settings(user)
    full_settings(claude.settings_path("project", world.project, world.home))  # the same events again
    done = world.cli("doctor", check=False)
    assert done.returncode != 0, done.stdout
    [line] = [line for line in done.stdout.splitlines() if "duplicates" in line]
    assert line.startswith("FIX") and "28 events registered more than once" in line
    assert "hooks uninstall --project" in line  # two settings files: the fix is to drop one


def test_a_registration_for_a_newer_claude_code_does_not_fit_an_older_one(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    claude.install(claude.settings_path("user", project, home), events=versions.profile(V332).events)
    found = routes.inspect(project, home, V197)
    assert found.unfit() == sorted(NEW_IN_332)
    assert routes.inspect(project, home, V332).unfit() == []
    assert routes.inspect(project, home, V332).missing() == []
