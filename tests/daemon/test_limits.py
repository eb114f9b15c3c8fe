"""What one client can cost the daemon on its Unix socket: slow requests, bursts of connections,
JSON made of millions of tiny values, and bodies of the wrong shape."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from elsabro.core.errors import BadRequest
from elsabro.core.jsonbody import parse_json
from elsabro.core.settings import Settings
from support import DaemonProcess, World

MIB = 1024 * 1024


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def start(world: World, **settings: str) -> DaemonProcess:
    world.env.update({f"ELSABRO_{name.upper()}": value for name, value in settings.items()})
    world.settings = Settings.from_env(world.env)
    return DaemonProcess(world).start()


def trickle(world: World, first: bytes, byte: bytes, deadline_s: float = 8.0) -> tuple[bytes, float]:
    """Send `first`, then `byte` every 0.1 s until the daemon answers or closes; its answer and
    how long that took. Fails if the daemon keeps the connection past `deadline_s`."""
    answer = bytearray()
    closed = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(world.settings.socket_path))
        started = time.monotonic()
        sock.sendall(first)

        def read() -> None:
            sock.settimeout(deadline_s)
            try:
                while chunk := sock.recv(65536):
                    answer.extend(chunk)
            except OSError:
                pass
            closed.set()

        reader = threading.Thread(target=read)
        reader.start()
        while not closed.wait(0.1) and time.monotonic() - started < deadline_s:
            try:
                sock.sendall(byte)
            except OSError:
                break
        reader.join()
        elapsed = time.monotonic() - started
    assert elapsed < deadline_s, f"the daemon kept a client sending a byte every 0.1 s for {deadline_s} s"
    return bytes(answer), elapsed


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off_at_its_deadline(world: World) -> None:
    start(world, header_timeout_s="1")
    answer, elapsed = trickle(world, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"head did not arrive within 1 s" in answer
    assert elapsed >= 0.9
    assert world.client().status()["pid"]  # everyone else is served as before


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_its_deadline(world: World) -> None:
    start(world, body_timeout_s="1")
    head = (
        f"POST /v1/publish HTTP/1.1\r\nHost: x\r\nElsabro-Project: {world.project}\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    answer, _ = trickle(world, head + b"[", b" ")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"body did not arrive within 1 s" in answer
    assert world.events() == []


def test_a_burst_of_connections_waits_in_the_backlog_instead_of_being_refused(
    world: World, daemon: DaemonProcess
) -> None:
    """1,000 clients connecting at once while the daemon cannot accept (stopped here, busy in
    real life): every one is queued by the kernel and answered, none is refused."""
    sockets: list[socket.socket] = []
    refused = 0
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        for _ in range(1000):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)  # as curl connects: a full backlog is an immediate EAGAIN
            try:
                sock.connect(str(world.settings.socket_path))
            except BlockingIOError:
                refused += 1
                sock.close()
                continue
            sockets.append(sock)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    try:
        assert refused == 0, f"{refused} of 1000 connections refused by a full backlog"
        for sock in sockets:
            sock.setblocking(True)
            sock.settimeout(30)
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answered = 0
        for sock in sockets:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            answered += answer.startswith(b"HTTP/1.1 200 ")
        assert answered == 1000
    finally:
        for sock in sockets:
            sock.close()


def test_json_of_millions_of_tiny_values_is_refused_before_it_is_parsed(
    world: World, daemon: DaemonProcess
) -> None:
    client = world.client()
    client.publish({"topic": "warm.up"})
    idle_kib = proc_status_kib(daemon.pid, "VmRSS")
    # About 15 MiB (under the 16 MiB request limit) holding four million empty lists.
    with pytest.raises(BadRequest, match=r"JSON with 4000003 values is over the limit of 250000"):
        client.publish({"topic": "many.lists", "payload": [[]] * 4_000_000})
    peak_kib = proc_status_kib(daemon.pid, "VmHWM")
    print(f"idle {idle_kib} KiB, peak {peak_kib} KiB")
    # A few copies of the body at most, never the gigabyte its parsed form takes.
    assert peak_kib - idle_kib < 96 * 1024, f"the daemon grew from {idle_kib} KiB to a peak of {peak_kib} KiB"
    assert [r["topic"] for r in world.events()] == ["warm.up"]


def test_the_json_value_limit_is_a_setting(world: World) -> None:
    start(world, max_json_nodes="1000")
    client = world.client()
    # The event object, its topic, its payload and the payload's values: 3 + 997 = 1,000.
    stored = client.publish({"topic": "at.limit", "payload": list(range(997))})
    assert stored["payload"][-1] == 996
    with pytest.raises(
        BadRequest, match=r"JSON with 1001 values is over the limit of 1000 \(ELSABRO_MAX_JSON_NODES\)"
    ):
        client.publish({"topic": "over.limit", "payload": list(range(998))})


def test_the_json_value_count_is_exact_and_ignores_strings() -> None:
    text = "a,b,[c],{d}" * 100_000  # commas and brackets inside a string are text
    assert parse_json(json.dumps({"s": text, "list": [1, [], {}]}).encode(), 6) == {
        "s": text,
        "list": [1, [], {}],
    }
    with pytest.raises(BadRequest, match="JSON with 6 values is over the limit of 5"):
        parse_json(b'{"s": "x,y", "list": [1, [ ], { }]}', 5)


@pytest.mark.parametrize("route", ["/v1/deadletters/retry", "/v1/deadletters/purge"])
@pytest.mark.parametrize(
    "body",
    [{"ids": 5}, {"ids": [["nested"]]}, {"ids": [{"id": "x"}]}, {"ids": "dl-1"}, {"subscription": ["a"]}],
)
def test_dead_letter_routes_answer_a_wrong_shape_with_400(
    world: World, daemon: DaemonProcess, route: str, body: dict[str, object]
) -> None:
    with pytest.raises(BadRequest, match="must be a"):
        world.client().call("POST", route, body)
    assert world.client().status()["pid"] == daemon.pid
