"""Running out of file descriptors is a passing state, not a broken project.

A daemon whose connections took every descriptor used to stop a project's log for good
at its next segment roll (until a restart), leak the writer lock of a project that failed
to open (every later request: a false LogInUse), and log a full traceback for every
failed `accept()`. Now the soft limit is raised to the hard one at start, a few spare
descriptors let the log roll anyway, a failed open lets its lock go, repeated errors are
logged once with a count, and everything works again once descriptors are free.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from elsabro.core.errors import StoreError
from support import DaemonProcess, World, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit in /proc")


def limited(soft: int, hard: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return preexec


class Connection(http.client.HTTPConnection):
    """A keep-alive HTTP connection over the daemon's Unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__("elsabro", timeout=20)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(self.unix_path))

    def publish(self, project: Path, topic: str) -> tuple[int, dict[str, object]]:
        body = json.dumps({"topic": topic})
        self.request("POST", "/v1/publish", body, {"Elsabro-Project": str(project)})
        response = self.getresponse()
        return response.status, json.loads(response.read())


def daemon_log(world: World) -> str:
    return (world.home / ".local" / "state" / "elsabro" / "log" / "daemon.log").read_text()


def test_the_soft_limit_is_raised_to_the_hard_one(world: World) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    daemon = DaemonProcess(world, preexec=limited(256, wanted)).start()
    assert soft_limit(daemon.pid) == wanted


def test_a_project_that_failed_to_open_is_not_left_locked(world: World) -> None:
    DaemonProcess(world).start()
    projects_file = world.home / ".local" / "state" / "elsabro" / "projects.json"
    projects_file.parent.mkdir(parents=True, exist_ok=True)
    projects_file.mkdir()  # the daemon cannot note the project: opening it fails after the lock
    with pytest.raises(StoreError, match="opening the project"):
        world.client().publish({"topic": "refused"})
    projects_file.rmdir()
    assert world.client().publish({"topic": "stored"})["sequence"] == 1  # not LogInUse


def test_out_of_descriptors_then_back(world: World) -> None:
    world.env["ELSABRO_SEGMENT_MAX_BYTES"] = "64"  # every write starts a segment: a roll needs a descriptor
    probe = DaemonProcess(world).start()
    world.client().publish({"topic": "warm"})
    baseline = open_files(probe.pid)
    probe.terminate()
    limit = baseline + 24
    daemon = DaemonProcess(world, preexec=limited(limit, limit)).start()
    first, second = world.project, world.root / "second"
    second.mkdir()
    kept = Connection(world.settings.socket_path)
    assert kept.publish(first, "before")[0] == 200  # the first project open, the connection kept

    flood: list[socket.socket] = []
    try:
        while open_files(daemon.pid) < limit and len(flood) < 4 * limit:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(world.settings.socket_path))
            flood.append(sock)
        wait_until(lambda: open_files(daemon.pid) >= limit - 1, what="the daemon to run out of descriptors")
        # Out of descriptors: the roll may use the spares or be refused for now (503), never fail for good.
        status, answer = kept.publish(first, "while.exhausted")
        assert status in (200, 503), answer
        status2, answer2 = kept.publish(second, "while.exhausted")
        assert status2 in (200, 503), answer2
    finally:
        for sock in flood:
            sock.close()
    kept.close()

    wait_until(lambda: open_files(daemon.pid) < limit - 8, what="the connections to be closed")
    # Back to normal, without a restart: the log writes again, the second project opens (no LogInUse).
    for project in (first, second):
        stored = world.client(project).publish({"topic": "after"})
        assert stored["topic"] == "after"
    topics = [r["topic"] for r in world.events()]
    assert topics[0] == "warm" and topics[-1] == "after"
    assert "intact" in world.cli("verify").stdout
    text = daemon_log(world)
    assert "Traceback" not in text
    assert len(text.splitlines()) < 40, text
