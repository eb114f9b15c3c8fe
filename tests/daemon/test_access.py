"""Access: no network listener unless configured; then loopback only, and a token on every request."""

from __future__ import annotations

import json
import os
import socket
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support import DaemonProcess, World


def listening_addresses(pid: int) -> list[str]:
    """The TCP addresses (hex ip:port as in /proc/net/tcp*) a process listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(port: int, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_no_network_listener_by_default(world: World, daemon: DaemonProcess) -> None:
    assert listening_addresses(daemon.pid) == []
    assert world.client().status()["tcpPort"] is None


def test_the_loopback_listener_needs_the_token(world: World) -> None:
    port = free_port()
    world.env["ELSABRO_TCP_PORT"] = str(port)
    daemon = DaemonProcess(world).start()
    [address] = listening_addresses(daemon.pid)
    assert address == f"0100007F:{port:04X}"  # 127.0.0.1 only
    token_file = world.home / ".local" / "state" / "elsabro" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    project = {"Elsabro-Project": str(world.project), "Content-Type": "application/json"}
    event = {"topic": "over.tcp", "payload": 1}
    for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token}):
        status, answer = post(port, "/v1/publish", event, {**project, **wrong})
        assert status == 401 and answer["error"]["code"] == "unauthorized"
    status, stored = post(port, "/v1/publish", event, {**project, "Authorization": f"Bearer {token}"})
    assert status == 200 and stored["sequence"] == 1
    assert [r["topic"] for r in world.events()] == ["over.tcp"]
