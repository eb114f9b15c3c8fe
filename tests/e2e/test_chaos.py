"""Chaos around a real Claude Code session: every hook event still lands exactly once.

While the scripted session runs, between its tool batches (the CLI waits for the fake
Messages API, so every hook of the batch before has finished), the test:

  1. fills the disk under the project's log, and frees it again;
  2. pauses the daemon (SIGSTOP): the hooks of that batch time out;
  3. kills the paused daemon (SIGKILL): the next hooks find a dead socket and spool; then
     the daemon is started again;
  4. replaces the project directory by a copy of itself (a new directory at the same
     path, as `rm -rf repo && git clone` or a restore from a backup makes one).

At the end the project's log (the new directory's) holds every hook event of the session
exactly once, with its links, and the chain verifies. The disk fill needs root (a tmpfs
mount); this machine's CI runs as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_claude_code import assert_session_recorded, claude_world, expected_topics

from fake_anthropic import Block, FakeAnthropic
from run_claude import cache_dir, ensure_claude, run_claude
from scenario import FINAL_TEXT, Scenario
from support import DaemonProcess, World, wait_until

pytestmark = pytest.mark.e2e

LOG_FS_BYTES = 8 * 1024 * 1024
VERSION = "2.1.197"  # the chaos is elsabro's; one version of the CLI is enough to drive it


class ChaosScenario(Scenario):
    """The usual scenario, with an action run before some of its main steps."""

    def __init__(self, project_dir: str, actions: dict[int, Callable[[], None]]) -> None:
        super().__init__(project_dir)
        self.actions = actions
        self.done: list[int] = []
        self.errors: list[BaseException] = []

    def main_step(self, step: int, body: dict[str, Any]) -> list[Block]:
        action = self.actions.pop(step, None)
        if action is not None:
            try:
                action()
                self.done.append(step)
            except BaseException as exc:  # reported by the test, not lost in the server's thread
                self.errors.append(exc)
        return super().main_step(step, body)


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int, moved_to: Path) -> Iterator[Path]:
    """A small filesystem mounted at `path`; unmounted at the end wherever its parent moved."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        for where in (path, moved_to):
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; the filler file is returned."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # unbuffered, so ENOSPC ends each size's loop here
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def daemon_pid(world: World) -> int:
    return int(world.client().status()["pid"])


def spool_empty(project: Path) -> bool:
    return not list((project / ".elsabro" / "spool").glob("*.json"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem to fill needs root")
def test_a_session_through_pause_kill_restart_replacement_and_full_disk(world: World) -> None:
    claude = ensure_claude(cache_dir(VERSION), VERSION)
    env = claude_world(world, claude)
    # A daemon the hooks start inherits this: drain what a full disk left behind quickly.
    env["ELSABRO_MAINTENANCE_INTERVAL_S"] = "0.2"
    world.env["ELSABRO_MAINTENANCE_INTERVAL_S"] = "0.2"
    project = world.project
    (project / ".elsabro").mkdir(mode=0o700)
    old = world.root / "project.old"
    stopped: list[int] = []

    with tmpfs(project / ".elsabro" / "events", LOG_FS_BYTES, old / ".elsabro" / "events") as log_fs:
        DaemonProcess(world).start()
        filler: list[Path] = []

        def disk_full() -> None:
            filler.append(fill(log_fs))

        def disk_freed() -> None:
            filler.pop().unlink()

        def pause() -> None:
            stopped.append(daemon_pid(world))
            os.kill(stopped[-1], signal.SIGSTOP)

        def kill() -> None:
            os.kill(stopped[-1], signal.SIGKILL)
            for daemon in world.daemons:  # reap it, so the next start finds the lock free
                if daemon.process is not None and daemon.process.pid == stopped[-1]:
                    daemon.process.wait(timeout=10)

        def restart() -> None:
            # As the user, or the next hook after its start attempt's 10 s, would: the hooks of
            # the paused daemon tried a start already, which the paused daemon's lock refused.
            world.cli("daemon", "start")

        def replace() -> None:
            # Everything so far stored: the copy carries the whole log, as a backup would.
            wait_until(lambda: spool_empty(project), timeout_s=30, what="the spool drained")
            copy = world.root / "project.new"
            shutil.copytree(project, copy, symlinks=True)
            os.rename(project, old)  # the CLI's working directory moves with it
            os.rename(copy, project)

        actions = {1: disk_full, 2: disk_freed, 3: pause, 4: kill, 5: restart, 6: replace}
        scenario = ChaosScenario(str(project), dict(actions))
        with FakeAnthropic(scenario) as api:
            run = run_claude(claude, project, world.home, api.base_url, extra_env=env, timeout=240)
        assert not scenario.errors, scenario.errors
        assert scenario.done == sorted(actions)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.strip() == FINAL_TEXT  # the hook printed nothing into the session

        expected = sum(expected_topics(VERSION).values())
        wait_until(lambda: spool_empty(project), timeout_s=30, what="the new directory's spool drained")
        wait_until(lambda: len(world.events()) >= expected, timeout_s=30, what="every event in the new log")
        records = world.events()
        assert len(records) == expected, sorted(r["topic"] for r in records)
        assert len({r["id"] for r in records}) == expected
        assert_session_recorded(records, VERSION)
        verify = world.cli("verify")
        assert "intact" in verify.stdout
        # Nothing went to the moved-away copy after the replacement.
        moved = [
            line
            for path in sorted((old / ".elsabro" / "events").glob("segment-*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]
        assert len(moved) < expected
