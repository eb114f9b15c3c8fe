"""The real Claude Code CLI, offline, with the elsabro plugin installed the way users install it.

One scripted session (Bash ok and failing, Write, Read, Edit, two parallel calls,
TaskCreate then TaskUpdate to completed, an Agent subagent with its own tool call) must
land in the project's log: the exact multiset of topics, the correlation and causation
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
from run_claude import ensure_claude, run_scenario
from scenario import EXPECTED_HOOKS, FINAL_TEXT, ID
from support import REPO, DaemonProcess, World, wait_until

pytestmark = pytest.mark.e2e


def expected_topics() -> Counter[str]:
    topics: Counter[str] = Counter()
    for hook, tool, _, _ in EXPECTED_HOOKS:
        topics[TOPICS[hook].format(tool=(tool or "").lower(), kind="")] += 1
    topics["task.status.changed"] += 1  # derived from the TaskUpdate to completed
    return topics


@pytest.fixture(scope="session")
def claude_bin() -> str:
    return ensure_claude(REPO / ".cache" / "claude-code")


def claude_world(world: World, claude_bin: str, marketplace: str = str(REPO)) -> dict[str, str]:
    """Install the plugin as a user does, and the environment for the CLI's runs."""
    env = {
        **world.env,
        # The hook starts the daemon with the `elsabro` it finds on the PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{world.env.get('PATH', '')}",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    (world.project / "CLAUDE.md").write_text("# e2e project\n")
    for args in (["plugin", "marketplace", "add", marketplace], ["plugin", "install", "elsabro@elsabro"]):
        done = subprocess.run(
            [claude_bin, *args], env=env, cwd=world.root, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return {"PATH": env["PATH"], "ELSABRO_SOCKET": world.env["ELSABRO_SOCKET"]}


def run_session(world: World, claude_bin: str, extra_env: dict[str, str]) -> None:
    run = run_scenario(claude_bin, world.project, world.home, extra_env=extra_env, timeout=240)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert run.proc.stdout.strip() == FINAL_TEXT  # the hook printed nothing into the session


def by_sequence(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["sequence"])


def assert_session_recorded(records: list[dict[str, Any]]) -> None:
    records = by_sequence(records)
    assert Counter(r["topic"] for r in records) == expected_topics()
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
    assert_session_recorded(world.events())
    assert not list((world.project / ".elsabro" / "spool").glob("*.json"))  # nothing needed the spool


def test_a_session_with_the_daemon_down_still_lands_exactly_once(world: World, claude_bin: str) -> None:
    env = claude_world(world, claude_bin)
    assert not world.settings.socket_path.exists()
    run_session(world, claude_bin, env)
    expected = sum(expected_topics().values())
    # The first hook spooled its event and started the daemon; it drains the spool in order.
    wait_until(lambda: len(world.events()) >= expected, timeout_s=30, what="every event in the log")
    wait_until(lambda: not list((world.project / ".elsabro" / "spool").glob("*.json")), what="an empty spool")
    records = world.events()
    assert len(records) == expected
    assert len({r["id"] for r in records}) == expected
    assert any("spoolId" in r["metadata"] for r in records)
    assert_session_recorded(records)


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
    assert_session_recorded(world.events())


def test_the_plugin_runs_from_a_copy_with_nothing_outside_it(
    world: World, claude_bin: str, tmp_path: Path
) -> None:
    """Installed plugins run from a cache copy: a copy of plugin/ alone must work."""
    copy = tmp_path / "plugin-copy"
    shutil.copytree(REPO / "plugin", copy, symlinks=False)  # links resolved, as the installer does
    assert not any(p.is_symlink() for p in copy.rglob("*"))
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{world.env.get('PATH', '')}",
        "ELSABRO_SOCKET": world.env["ELSABRO_SOCKET"],
    }
    (world.project / "CLAUDE.md").write_text("# e2e project\n")
    DaemonProcess(world).start()
    run = run_scenario(
        claude_bin, world.project, world.home, extra_env=env, extra_args=["--plugin-dir", str(copy)]
    )
    assert run.proc.returncode == 0, run.proc.stderr
    assert_session_recorded(world.events())


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
    assert set(hooks) == set(TOPICS)
    assert not {"WorktreeCreate", "WorktreeRemove"} & set(hooks)
