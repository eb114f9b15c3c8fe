"""The real Claude Code CLI, offline, with elsabro installed the way users install it.

Each test runs on both supported versions (2.1.197 and 2.1.332, `CLAUDE_VERSIONS`). One
scripted session (Bash ok, failing, changing directory, Write, Read, Edit, two parallel
calls, TaskCreate then TaskUpdate to completed, an Agent subagent with its own tool call)
must land in the project's log: every hook event of that version exactly once (CwdChanged
through the settings hook, the rest through the plugin), the correlation and causation
links, the derived task.status.changed, session.started first and session.ended last.
A second run starts with no daemon: every event still lands, exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from elsabro.ingest.hooks import TOPICS
from elsabro.install import claude, versions
from elsabro.views.snapshots import rebuild
from run_claude import CLAUDE_VERSIONS, cache_dir, ensure_claude, run_scenario
from scenario import FINAL_TEXT, ID, TASK_NOTIFICATION_TOPIC, expected_hooks
from support import REPO, DaemonProcess, World, wait_until

pytestmark = pytest.mark.e2e


def expected_topics(version: str) -> Counter[str]:
    """Every hook event the version fires for the scenario (settings route: all of them)."""
    topics: Counter[str] = Counter()
    prompts = 0
    for hook, tool, _, _ in expected_hooks(version, "settings"):
        if hook == "UserPromptSubmit":
            prompts += 1  # the second one (2.1.332) is Claude Code's own task notification
            if prompts > 1:
                topics[TASK_NOTIFICATION_TOPIC] += 1
                continue
        topics[TOPICS[hook].format(tool=(tool or "").lower(), kind="")] += 1
    topics["task.status.changed"] += 1  # derived from the TaskUpdate to completed
    return topics


@pytest.fixture(scope="session", params=CLAUDE_VERSIONS)
def claude_bin(request: pytest.FixtureRequest) -> str:
    return ensure_claude(cache_dir(request.param), request.param)


def version_of(claude_bin: str) -> str:
    """The version a binary from `ensure_claude(cache_dir(version))` was installed as."""
    return next(v for v in CLAUDE_VERSIONS if claude_bin.startswith(str(cache_dir(v).resolve()) + os.sep))


def claude_path(world: World, claude_bin: str) -> str:
    """A PATH with this `claude` and the test's `elsabro` (the hook starts the daemon with it)."""
    bin_dir = world.root / "claude-bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "claude").exists():
        (bin_dir / "claude").symlink_to(claude_bin)
    return os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), world.env.get("PATH", "")])


def claude_world(world: World, claude_bin: str, marketplace: str = str(REPO)) -> dict[str, str]:
    """Install the plugin and the settings hooks as a user does (install.sh's two steps),
    and return the environment for the CLI's runs."""
    env = {
        **world.env,
        "PATH": claude_path(world, claude_bin),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    (world.project / "CLAUDE.md").write_text("# e2e project\n")
    for args in (["plugin", "marketplace", "add", marketplace], ["plugin", "install", "elsabro@elsabro"]):
        done = subprocess.run(
            [claude_bin, *args], env=env, cwd=world.root, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "elsabro", "hooks", "install", "--user"],
        env=env,
        cwd=world.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"PATH": env["PATH"], "ELSABRO_SOCKET": world.env["ELSABRO_SOCKET"]}


def run_session(world: World, claude_bin: str, extra_env: dict[str, str]) -> None:
    run = run_scenario(claude_bin, world.project, world.home, extra_env=extra_env, timeout=240)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    # The hook printed nothing into the session (2.1.332 answers the task notification too).
    assert set(run.proc.stdout.split()) <= set(FINAL_TEXT.split()), run.proc.stdout


def by_sequence(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["sequence"])


def assert_session_recorded(records: list[dict[str, Any]], version: str) -> None:
    records = by_sequence(records)
    assert Counter(r["topic"] for r in records) == expected_topics(version)
    assert records[0]["topic"] == "session.started"
    assert records[-1]["topic"] == "session.ended"
    sessions = {r["correlationId"] for r in records}
    assert len(sessions) == 1 and None not in sessions
    assert {r["source"] for r in records} == {"claude-code"}
    by_id = {r["id"]: r for r in records}

    started = {
        r["metadata"]["toolUseId"]: r
        for r in records
        if r["topic"].endswith(".started") and r["topic"].startswith("tool.")
    }
    for record in records:
        topic = record["topic"]
        if topic.startswith("tool.") and topic.endswith((".completed", ".failed")):
            assert record["causationId"] == started[record["metadata"]["toolUseId"]]["id"], topic
            assert isinstance(record["metadata"]["durationMs"], int)
        assert record["metadata"]["projectDir"] == records[0]["metadata"]["projectDir"]

    # The sessions view counts the user's one prompt, not the task notification 2.1.332 submits.
    [row] = rebuild("sessions", [json.dumps(r).encode() for r in records])
    assert row["prompts"] == 1

    [moved] = [r for r in records if r["topic"] == "cwd.changed"]
    assert moved["payload"]["new_cwd"] == moved["payload"]["old_cwd"] + "/sub"

    [failed] = [r for r in records if r["topic"] == "tool.bash.failed"]
    assert failed["metadata"]["toolUseId"] == ID["bash_fail"]

    [agent_start] = [r for r in records if r["topic"] == "agent.started"]
    [agent_stop] = [r for r in records if r["topic"] == "agent.completed"]
    assert agent_stop["causationId"] == agent_start["id"]
    sub_tool = [r for r in records if r["metadata"].get("toolUseId") == ID["sub_bash"]]
    assert len(sub_tool) == 2
    assert {r["metadata"]["agentId"] for r in sub_tool} == {agent_start["metadata"]["agentId"]}

    [change] = [r for r in records if r["topic"] == "task.status.changed"]
    [update] = [r for r in records if r["topic"] == "tool.taskupdate.completed"]
    [created] = [r for r in records if r["topic"] == "task.created"]
    assert change["causationId"] == update["id"]
    assert change["payload"] == {
        "taskId": str(created["payload"]["task_id"]),
        "oldStatus": "pending",
        "newStatus": "completed",
    }
    assert by_id[change["causationId"]]["sequence"] < change["sequence"]


def test_a_session_lands_in_the_log_with_the_daemon_up(world: World, claude_bin: str) -> None:
    env = claude_world(world, claude_bin)
    DaemonProcess(world).start()
    run_session(world, claude_bin, env)
    assert_session_recorded(world.events(), version_of(claude_bin))
    assert not list((world.project / ".elsabro" / "spool").glob("*.json"))  # nothing needed the spool


def test_a_session_with_the_daemon_down_still_lands_exactly_once(world: World, claude_bin: str) -> None:
    env = claude_world(world, claude_bin)
    assert not world.settings.socket_path.exists()
    run_session(world, claude_bin, env)
    expected = sum(expected_topics(version_of(claude_bin)).values())
    # The first hook spooled its event and started the daemon; it drains the spool in order.
    wait_until(lambda: len(world.events()) >= expected, timeout_s=30, what="every event in the log")
    wait_until(lambda: not list((world.project / ".elsabro" / "spool").glob("*.json")), what="an empty spool")
    records = world.events()
    assert len(records) == expected
    assert len({r["id"] for r in records}) == expected
    assert any("spoolId" in r["metadata"] for r in records)
    assert_session_recorded(records, version_of(claude_bin))


def test_installed_from_a_git_marketplace_the_plugin_runs_from_its_cache_copy(
    world: World, claude_bin: str, tmp_path: Path
) -> None:
    from git_http import serve_repository

    with serve_repository(REPO, tmp_path) as url:
        env = claude_world(world, claude_bin, marketplace=url)
    cached = world.home / ".claude" / "plugins" / "cache" / "elsabro" / "elsabro"
    [version] = list(cached.iterdir())
    assert (version / "hooks" / "elsabro-hook.sh").is_file() and not (
        version / "hooks" / "elsabro-hook.sh"
    ).is_symlink()
    DaemonProcess(world).start()
    run_session(world, claude_bin, env)
    assert_session_recorded(world.events(), version_of(claude_bin))


def test_the_plugin_runs_from_a_copy_with_nothing_outside_it(
    world: World, claude_bin: str, tmp_path: Path
) -> None:
    """Installed plugins run from a cache copy: a copy of plugin/ alone must work."""
    copy = tmp_path / "plugin-copy"
    shutil.copytree(REPO / "plugin", copy, symlinks=False)  # links resolved, as the installer does
    assert not any(p.is_symlink() for p in copy.rglob("*"))
    env = {"PATH": claude_path(world, claude_bin), "ELSABRO_SOCKET": world.env["ELSABRO_SOCKET"]}
    (world.project / "CLAUDE.md").write_text("# e2e project\n")
    # What `elsabro hooks install` does next to an installed plugin: settings carry the rest.
    profile = versions.profile(versions.parse_version(version_of(claude_bin)))
    rest = [event for event in profile.events if event not in versions.PLUGIN_EVENTS]
    claude.install(world.home / ".claude" / "settings.json", events=rest)
    DaemonProcess(world).start()
    run = run_scenario(
        claude_bin, world.project, world.home, extra_env=env, extra_args=["--plugin-dir", str(copy)]
    )
    assert run.proc.returncode == 0, run.proc.stderr
    assert_session_recorded(world.events(), version_of(claude_bin))


def test_plugin_validates(claude_bin: str, tmp_path: Path) -> None:
    for target in (REPO / "plugin", REPO):
        done = subprocess.run(
            [claude_bin, "plugin", "validate", str(target)],
            env={**os.environ, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "Validation passed" in done.stdout, done.stdout + done.stderr
    hooks = json.loads((REPO / "plugin" / "hooks" / "hooks.json").read_text())["hooks"]
    assert list(hooks) == list(versions.PLUGIN_EVENTS)  # known to every version: none disables the plugin
    assert "CwdChanged" not in hooks  # never delivered to plugins; settings carry it
    assert not {"WorktreeCreate", "WorktreeRemove"} & set(hooks)
