"""The `elsabro` command through its real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elsabro.core.settings import default_project
from support import World


def test_newcomer_flow_publish_starts_the_daemon_and_history_reads_it_back(world: World) -> None:
    out = world.cli(
        "publish", "agent.started", "--data", '{"agentId": "a1"}', "--correlation-id", "s1"
    ).stdout
    stored = json.loads(out)
    assert stored["topic"] == "agent.started" and stored["correlationId"] == "s1"
    world.cli(
        "publish", "agent.completed", "--data", "-", "--causation-id", stored["id"], input='{"ok": true}'
    )
    lines = world.cli("history", "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["topic"] for r in records] == ["agent.started", "agent.completed"]
    assert records[1]["payload"] == {"ok": True} and records[1]["causationId"] == stored["id"]
    human = world.cli("history").stdout
    assert "agent.completed" in human and "s1" in human


def test_daemon_start_status_stop(world: World) -> None:
    assert world.cli("daemon", "status", check=False).returncode == 3
    world.cli("daemon", "start")
    world.cli("daemon", "start")  # already running: fine
    world.cli("publish", "x.y")
    status = json.loads(world.cli("daemon", "status", "--json").stdout)
    assert status["running"] is True and status["socket"] == str(world.settings.socket_path)
    assert status["projects"] == [str(world.project)] and status["uptimeS"] >= 0 and status["pid"] > 0
    assert "stopped" in world.cli("daemon", "stop").stdout
    assert world.cli("daemon", "status", check=False).returncode == 3
    assert "was not running" in world.cli("daemon", "stop").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "x", "--data", "{nope"], "--data is not valid JSON"),
        (["publish", "bad topic"], "invalid topic"),
        (["history", "--since", "yesterday-ish"], "invalid time"),
        (["history", "--topic", "a..b"], "invalid pattern"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_1(world: World, args: list[str], message: str) -> None:
    result = world.cli(*args, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_tail_follow_prints_new_events(world: World) -> None:
    world.cli("publish", "old.event")
    tail = subprocess.Popen(
        [sys.executable, "-m", "elsabro", "tail", "-f", "--json", "-n", "1"],
        env=world.env,
        cwd=world.project,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        assert json.loads(tail.stdout.readline())["topic"] == "old.event"
        world.cli("publish", "new.event")
        assert json.loads(tail.stdout.readline())["topic"] == "new.event"
    finally:
        tail.terminate()
        tail.wait(timeout=10)
        tail.stdout.close() if tail.stdout else None


def test_project_option_and_history_limit(world: World, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    for n in range(5):
        world.cli("--project", str(other), "publish", f"n.e{n}")
    lines = world.cli("--project", str(other), "history", "--json", "--limit", "2").stdout.splitlines()
    assert [json.loads(line)["topic"] for line in lines] == ["n.e3", "n.e4"]
    assert world.cli("history", "--json").stdout == ""  # the default project has none


def test_default_project_rule(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "deep").mkdir(parents=True)
    assert default_project({"CLAUDE_PROJECT_DIR": "/some/where"}, repo) == Path("/some/where")
    assert default_project({}, repo / "src" / "deep") == repo
    plain = tmp_path / "plain"
    plain.mkdir()
    assert default_project({}, plain) == plain


def test_publish_and_history_do_not_import_what_they_do_not_use(world: World) -> None:
    world.cli("daemon", "start")
    code = (
        "import sys\nfrom elsabro.cli.main import main\n"
        "main(['publish', 'x.y'])\nmain(['history', '-n', '1'])\n"
        "print(sorted(m for m in ('httpx', 'watchdog', 'pydantic', 'platformdirs', 'http.client', 'asyncio')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=world.env,
        cwd=world.project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
