"""Fixtures that start real elsabro pieces in a throwaway world.

Every test gets its own HOME, socket and project: nothing touches the real `$HOME`,
`~/.claude` or a daemon the user runs. Readiness is awaited with deadlines, never with
fixed sleeps. The helpers live in support.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver import Receiver, serve_receiver
from support import DaemonProcess, World, stop_any_daemon


@pytest.fixture
def world() -> Iterator[World]:
    # Short root: AF_UNIX socket paths must stay under about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="elsabro-", dir="/tmp"))
    home, project = root / "home", root / "project"
    home.mkdir()
    project.mkdir()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("ELSABRO_", "XDG_", "CLAUDE"))
    }
    env.update(HOME=str(home), ELSABRO_SOCKET=str(root / "run" / "d.sock"))
    made = World(root, home, project, env)
    yield made
    for daemon in made.daemons:
        daemon.close()
    stop_any_daemon(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(world: World) -> DaemonProcess:
    return DaemonProcess(world).start()  # the world stops it


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (webhook tests)."""
    with serve_receiver() as state:
        yield state
