"""One writer per project, however many daemons run (different sockets, same or other HOME).

The writer lock (`.elsabro/writer.lock`, an flock) binds to the file, not to its name. A
daemon that kept serving a project after its lock file was removed (with `.elsabro/`, or
alone by a cleanup tool) held a lock nobody else could see: the next daemon locked a new
file beside it and both wrote one log, forking its chain. Now a daemon writes only while
the lock file it holds is the one at the path; otherwise it reopens, and finds the lock
taken by the other daemon (LogInUse, 409).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator

import pytest

from elsabro.core.errors import LogInUse
from support import DaemonProcess, World


@contextlib.contextmanager
def other_daemon(world: World, name: str, own_home: bool) -> Iterator[World]:
    """A second daemon on its own socket, serving the same project directory."""
    home = world.root / f"home-{name}" if own_home else world.home
    home.mkdir(exist_ok=True)
    env = {**world.env, "HOME": str(home), "ELSABRO_SOCKET": str(world.root / f"run-{name}" / "d.sock")}
    other = World(world.root, home, world.project, env)
    try:
        DaemonProcess(other).start()
        yield other
    finally:
        for daemon in other.daemons:
            daemon.close()


def publish_through(worlds: list[World], topic: str) -> tuple[list[str], list[str]]:
    """Publish once through each daemon: the ids acknowledged, and the LogInUse messages."""
    stored, refused = [], []
    for index, each in enumerate(worlds):
        try:
            stored.append(each.client().publish({"topic": topic, "payload": {"via": index}})["id"])
        except LogInUse as exc:
            refused.append(str(exc))
    return stored, refused


@pytest.mark.parametrize("removed", ["writer.lock", ".elsabro"])
def test_three_daemons_one_project_one_chain(world: World, removed: str) -> None:
    DaemonProcess(world).start()
    with other_daemon(world, "b", own_home=True) as b, other_daemon(world, "c", own_home=False) as c:
        daemons = [world, b, c]
        acknowledged, refused = publish_through(daemons, "first")
        assert len(acknowledged) == 1 and len(refused) == 2
        assert all("another process writes the log of" in message for message in refused)

        # A cleanup removes the lock file (alone, or with the whole .elsabro) while it is held.
        if removed == "writer.lock":
            (world.project / ".elsabro" / "writer.lock").unlink()
        else:
            shutil.rmtree(world.project / ".elsabro")
            acknowledged.clear()  # the log went with it
        for round_ in range(3):
            stored, refused = publish_through(daemons, f"round.{round_}")
            assert len(stored) == 1, f"round {round_}: {len(stored)} daemons wrote the log"
            assert len(refused) == 2
            acknowledged.extend(stored)

        records = world.events()
        assert [r["id"] for r in records] == acknowledged  # each acknowledged event once, in order
        assert [r["sequence"] for r in records] == list(range(1, len(records) + 1))
        verify = json.loads(world.cli("verify", "--json").stdout)
        assert verify["intact"], verify
