"""The loopback TCP listener under attack by a local user without the token.

Any local user can connect to 127.0.0.1, so what such a client costs the daemon must be
bounded: the token is checked on the request's head before its body is read, a head must
arrive whole in time, and the listener serves a bounded number of connections, apart from
the owner's Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path

from elsabro.core.settings import Settings
from support import DaemonProcess, World, wait_until

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status_kib(pid: int, field: str) -> int:
    """A memory figure of a process in KiB: VmRSS (now) or VmHWM (its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def open_files_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-files limit")


def start_daemon(world: World, nofile_soft: int | None = None) -> DaemonProcess:
    """A real daemon; with `nofile_soft`, started under that soft limit on open files (a common
    desktop default is 1,024) to see that the daemon raises it itself."""

    def limit() -> None:
        if nofile_soft is not None:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (nofile_soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            )

    world.settings = Settings.from_env(world.env)
    daemon = DaemonProcess(world)
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "elsabro", "daemon", "run", "--quiet"],
        env=world.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
    )
    world.daemons.append(daemon)
    wait_until(daemon._ready, what="the daemon to answer")
    return daemon


def read_answer(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes (a reset after the answer counts as a close)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_the_token_is_checked_before_the_body_is_read(world: World) -> None:
    port = free_port()
    world.env["ELSABRO_TCP_PORT"] = str(port)
    start_daemon(world)
    for authorization in ("", "Authorization: Bearer nope\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # A head announcing 16 MB and no body at all: the answer cannot wait for the body.
            sock.sendall(
                (
                    f"POST /v1/publish HTTP/1.1\r\nHost: x\r\n{authorization}"
                    f"Elsabro-Project: {world.project}\r\nContent-Length: {16 * 1000 * 1000}\r\n\r\n"
                ).encode()
            )
            answer = read_answer(sock)  # the daemon closes after answering; 5 s at most
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        assert b'"unauthorized"' in answer and b"connection: close" in answer.lower()
    assert world.events() == []


class Flood:
    """A local user without the token: many slow connections and some large uploads."""

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.held: list[socket.socket | None] = [None] * connections
        self.uploads: list[str] = []

    def trickle(self) -> None:
        """Every connection alive (a new one where the daemon closed it) and a header byte further."""
        for index, sock in enumerate(self.held):
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                    sock.sendall(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                sock.sendall(b"a")
                self.held[index] = sock
            except OSError:
                if sock is not None:
                    sock.close()
                self.held[index] = None

    def upload(self) -> None:
        """16 MiB posted without the token, as fast as the daemon takes it."""
        chunk = b"[" + b"0," * (MIB // 2 - 1) + b"0]"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
                sock.sendall(
                    f"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: {16 * MIB}\r\n\r\n".encode()
                )
                for _ in range(16):
                    sock.sendall(chunk)
            self.uploads.append("sent")
        except OSError:
            self.uploads.append("refused")

    def close(self) -> None:
        for sock in self.held:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def test_a_flood_of_unauthenticated_clients_costs_bounded_memory_and_the_socket_keeps_working(
    world: World,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard)
    )  # this test's 1,000 sockets
    port = free_port()
    world.env["ELSABRO_TCP_PORT"] = str(port)
    daemon = start_daemon(world, nofile_soft=1024)
    daemon_soft, daemon_hard = open_files_limits(daemon.pid)
    assert daemon_soft == daemon_hard, "the daemon raises its soft limit on open files to the hard one"
    world.cli("publish", "warm.up", "--data", '{"n": 0}')  # the project open, as while in use
    idle_kib = proc_status_kib(daemon.pid, "VmRSS")
    idle_fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))

    flood = Flood(port, 1000)
    flood.trickle()
    uploaders = [threading.Thread(target=flood.upload) for _ in range(8)]
    for thread in uploaders:
        thread.start()
    try:
        max_fds = 0
        for round_ in range(4):  # the owner's CLI, again and again, while the flood goes on
            world.cli("publish", "during.flood", "--data", f'{{"round": {round_}}}', timeout_s=60)
            assert "running, pid" in world.cli("daemon", "status", timeout_s=60).stdout
            flood.trickle()
            max_fds = max(max_fds, len(os.listdir(f"/proc/{daemon.pid}/fd")))
        for thread in uploaders:
            thread.join(timeout=60)
        assert len(flood.uploads) == 8
    finally:
        flood.close()
    peak_kib = proc_status_kib(daemon.pid, "VmHWM")
    print(f"idle {idle_kib} KiB, peak {peak_kib} KiB, descriptors {idle_fds} idle, {max_fds} at most")
    assert peak_kib <= 2 * idle_kib, f"the daemon grew from {idle_kib} KiB to a peak of {peak_kib} KiB"
    # Descriptors too: the TCP listener's limit, not the number of attackers (those served,
    # and at most one accept burst, the backlog of the same size, about to be closed), plus a
    # few for the owner's CLI connections, the project's files and the descriptors held in
    # reserve for the log (core/descriptors.py). Without the limit it reached about 1,000.
    limit = world.settings.max_tcp_connections
    assert max_fds <= idle_fds + 3 * limit + 24, (idle_fds, max_fds)
    topics = [record["topic"] for record in world.events()]
    assert topics == ["warm.up"] + ["during.flood"] * 4
