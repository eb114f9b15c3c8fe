"""What a request may create, and what it refuses to follow.

Reading a project that has no log yet creates nothing: the answer is the same empty one.
A hook event for a directory that does not exist is dropped (logged), not kept in a
directory made for it. A `.elsabro` or `.elsabro/events` that is a symbolic link is
refused with one clear line: it could point the log anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from elsabro.core.errors import ProjectError
from support import DaemonProcess, World, payload, run_hook, wait_until

READS = [
    ("history",),
    ("history", "--json"),
    ("tail",),
    ("export",),
    ("sessions",),
    ("stats",),
    ("tasks",),
    ("agents",),
    ("dlq", "list"),
    ("subscriptions", "list"),
    ("verify",),
]


def tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_reads_of_a_project_without_a_log_create_nothing(world: World, daemon: DaemonProcess) -> None:
    for command in READS:
        result = world.cli(*command)
        assert tree(world.project) == [], f"`elsabro {' '.join(command)}` created {tree(world.project)}"
        if command[0] in ("history", "tail", "export"):
            assert result.stdout.strip() in ("", "[]"), result.stdout
    missing = world.cli("session", "abc", check=False)
    assert missing.returncode == 1 and "no events of session abc" in missing.stderr
    assert tree(world.project) == []
    assert str(world.project) not in world.client().status()["projects"]

    # The first write creates the log; reads then see it.
    world.client().publish({"topic": "first"})
    assert [json.loads(line)["topic"] for line in world.cli("history", "--json").stdout.splitlines()] == [
        "first"
    ]


def test_a_hook_for_a_missing_directory_creates_nothing(world: World, daemon: DaemonProcess) -> None:
    gone = world.root / "removed-repo"
    result = run_hook(world, payload("PostToolUse"), CLAUDE_PROJECT_DIR=str(gone))
    assert result.returncode == 0 and result.stdout == b""
    assert not gone.exists()
    wait_until(lambda: "dropped" in _daemon_log(world), what="the daemon to log the drop")


def _daemon_log(world: World) -> str:
    return (world.home / ".local" / "state" / "elsabro" / "log" / "daemon.log").read_text()


@pytest.mark.parametrize("link", [".elsabro", ".elsabro/events"])
def test_a_symlinked_log_directory_is_refused(world: World, daemon: DaemonProcess, link: str) -> None:
    elsewhere = world.root / "elsewhere"
    elsewhere.mkdir()
    if link != ".elsabro":
        (world.project / ".elsabro").mkdir()
    os.symlink(elsewhere, world.project / link)
    with pytest.raises(ProjectError, match="is a symbolic link") as caught:
        world.client().publish({"topic": "x"})
    assert "\n" not in str(caught.value)
    for command in ("history", "verify"):
        result = world.cli(command, check=False)
        assert result.returncode == 1 and "is a symbolic link" in result.stderr, command
    assert tree(elsewhere) == [], "something was written through the link"


def test_doctor_on_a_project_without_a_log_creates_nothing_there(world: World, daemon: DaemonProcess) -> None:
    result = world.cli("doctor", check=False)
    assert tree(world.project) == [], f"doctor created {tree(world.project)}"
    round_trip = [line for line in result.stdout.splitlines() if "round trip" in line]
    assert round_trip and round_trip[0].startswith("ok"), result.stdout
    assert "scratch project" in round_trip[0]
