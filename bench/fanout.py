"""Fan-out: how soon a handler sees a published event, and how fast webhooks go out.

Subscriptions and webhook endpoints are consumers that read the log in order, one event
in flight each (daemon/elsabro/delivery/dispatch.py). These figures run in a world of their own,
with a daemon of their own and one project per configuration; each project's config is
written before the first request names it, so the daemon applies it as it opens it.

  append   an `append` subscription; a thread here tails the file and stamps each line
           when it becomes readable (the handler writes, then fdatasyncs: a line can be
           seen a little before its fdatasync returns)
  exec     an `exec` subscription whose `sh -c` appends `date +%s%N` and the event id to
           a file: the time the program got to run, so process spawn is included
  webhook  N endpoints (all `*`) on one local receiver, a separate asyncio process (this
           file run as `fanout.py receive`) that answers 200 at once and stamps each
           request when it has fully arrived; its CPU is measured to show it keeps up

Latencies count from the wall time the payload carries (`time.time()` just before the
publish request), so they include the publish and its fsync; all clocks are the one
wall clock of this machine. Throughput counts from just before a batch is published to
the last delivery's arrival.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from common import Daemon, Figure, World, percentile

SECTION = "fanout"
TOPIC = "bench.fanout"
# A handler or receiver still short of events this long after the last publish is stuck.
GRACE_S = 60.0
# How often the append file is read: the resolution of the append latencies.
TAIL_POLL_S = 0.0005


@dataclass(frozen=True)
class FanoutPlan:
    """How much to run. Latencies are taken at offered rates well under what each path can do."""

    duration_s: float  # of one paced handler run (append, exec)
    warmup_s: float
    runs: int
    batch_deliveries: int  # events x endpoints in one throughput run
    latency_duration_s: float  # of one paced webhook run
    append_per_s: float = 200.0
    exec_per_s: float = 50.0
    endpoints: tuple[int, ...] = (1, 10, 100)
    latency_deliveries_per_s: float = 100.0  # offered to the webhooks, whatever the endpoint count


# -- the webhook receiver (its own process) ----------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class _Received:
    """Requests as they arrive (path, wall time, body), shared by the loop thread and the commands."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[bytes, float, bytes]] = []
        self.connections = 0


class _Receiving(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive: just enough for httpx's POSTs."""

    def __init__(self, received: _Received) -> None:
        self.received = received
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.received.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            arrived = time.time()
            with self.received.lock:
                self.received.requests.append((head.split(b" ", 2)[1], arrived, self.buffer[end + 4 : total]))
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            self.transport.write(OK)


def _take(received: _Received, expected: int, timeout_s: float) -> dict[str, Any]:
    """Wait for `expected` requests (or the deadline), then hand over all there are, and start afresh."""
    deadline = time.monotonic() + timeout_s
    while len(received.requests) < expected and time.monotonic() < deadline:
        time.sleep(0.002)
    with received.lock:
        taken, received.requests = received.requests, []
    deliveries = [
        [path.decode(), arrived, json.loads(body)["data"]["sentAt"]] for path, arrived, body in taken
    ]
    return {"deliveries": deliveries, "connections": received.connections, "cpu_s": time.process_time()}


def receive() -> int:
    """The receiver process: prints `ready PORT`, then answers each `take N TIMEOUT_S` with a JSON line."""
    received = _Received()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: _Receiving(received), "127.0.0.1", 0, backlog=1024)
    )
    threading.Thread(target=loop.run_forever, daemon=True).start()
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command != "take":
            raise SystemExit(f"unknown command {command!r}")
        print(json.dumps(_take(received, int(args[0]), float(args[1]))), flush=True)
    return 0


def _readline(stream: IO[str] | None, timeout_s: float) -> str:
    """One line, or an error after the deadline (never a wait without end)."""
    assert stream is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError(f"the receiver did not answer within {timeout_s} s")
    line = stream.readline()
    if not line:
        raise RuntimeError("the receiver exited early")
    return line


class Receiver:
    """The receiver process, driven from here."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "receive"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            word, port = _readline(self.process.stdout, GRACE_S).split()
            if word != "ready":
                raise RuntimeError(f"the receiver said {word!r}")
            self.port = int(port)
        except BaseException:
            self.close()
            raise

    def take(self, expected: int, timeout_s: float) -> dict[str, Any]:
        """Every request since the last take, once `expected` have arrived: exactly that many, or an error."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"take {expected} {timeout_s}\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(_readline(self.process.stdout, timeout_s + GRACE_S))
        if len(answer["deliveries"]) != expected:
            raise RuntimeError(f"the receiver got {len(answer['deliveries'])} requests, expected {expected}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()  # end of commands: it exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- publishing --------------------------------------------------------------------------------


def _configured(world: World, name: str, config: dict[str, Any]) -> Path:
    """A project whose config is in place before the daemon first hears of it."""
    project = world.project(name)
    (project / ".elsabro").mkdir(mode=0o700, exist_ok=True)
    (project / ".elsabro" / "config.json").write_text(json.dumps(config, indent=1))
    world.trust(project)
    return project


def _event() -> dict[str, Any]:
    return {"topic": TOPIC, "payload": {"sentAt": time.time()}}


def _publish_paced(
    world: World, project: Path, rate_per_s: float, count: int
) -> tuple[dict[str, float], float]:
    """`count` events, one per request, on a fixed schedule: the send time of each event id, and the
    worst lateness of a send in ms (a slow request delays the next sends, never the schedule)."""
    client = world.client(project)
    sent: dict[str, float] = {}
    lag_s = 0.0
    start = time.perf_counter() + 0.01
    for n in range(count):
        due = start + n / rate_per_s
        if (delay := due - time.perf_counter()) > 0:
            time.sleep(delay)
        lag_s = max(lag_s, time.perf_counter() - due)
        event = _event()
        sent[client.publish(event)["id"]] = event["payload"]["sentAt"]
    return sent, lag_s * 1000


@dataclass
class Meter:
    """CPU the daemon (and the receiver, if any) spent over several stretches of work."""

    daemon: Daemon
    receiver: Receiver | None = None
    daemon_cores: list[float] = field(default_factory=list)
    receiver_cores: list[float] = field(default_factory=list)
    connections: int = 0
    deliveries: int = 0
    lags_ms: list[float] = field(default_factory=list)

    def start(self) -> None:
        self._daemon_cpu_s, self._started = self.daemon.cpu_s(), time.perf_counter()
        if self.receiver is not None:
            state = self.receiver.take(0, 0)
            self._receiver_cpu_s, self._connections = state["cpu_s"], state["connections"]

    def stop(self, answer: dict[str, Any] | None = None) -> None:
        """The end of a stretch; `answer` is the receiver's last take."""
        elapsed = time.perf_counter() - self._started
        self.daemon_cores.append((self.daemon.cpu_s() - self._daemon_cpu_s) / elapsed)
        if answer is not None:
            self.receiver_cores.append((answer["cpu_s"] - self._receiver_cpu_s) / elapsed)
            self.connections += answer["connections"] - self._connections
            self.deliveries += len(answer["deliveries"])

    def describe(self) -> str:
        text = f"daemon CPU {statistics.median(self.daemon_cores):.2f} cores"
        if self.receiver_cores:
            text += (
                f", receiver CPU {statistics.median(self.receiver_cores):.2f} cores; {self.connections} new "
                f"TCP connections for {self.deliveries} deliveries"
            )
        if self.lags_ms:
            text += f"; worst send lag {max(self.lags_ms):.1f} ms"
        return text


# -- handlers: append and exec -----------------------------------------------------------------


class AppendProbe:
    """Follows the append handler's file from a thread while events are published."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._seen: list[tuple[float, bytes]] = []
        self._thread: threading.Thread | None = None

    def start(self, count: int, deadline: float) -> None:
        self._seen = []
        self._thread = threading.Thread(target=self._follow, args=(count, deadline))
        self._thread.start()

    def _follow(self, count: int, deadline: float) -> None:
        pending = b""
        fd: int | None = None
        try:
            while len(self._seen) < count and time.monotonic() < deadline:
                if fd is None and self.path.exists():
                    fd = os.open(self.path, os.O_RDONLY)
                chunk = os.pread(fd, 1 << 20, self.offset) if fd is not None else b""
                if not chunk:
                    time.sleep(TAIL_POLL_S)
                    continue
                seen = time.time()
                self.offset += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                self._seen.extend((seen, line) for line in lines)
        finally:
            if fd is not None:
                os.close(fd)
            self.offset -= len(pending)  # a line caught half-written is read whole next time

    def latencies_ms(self, sent: dict[str, float]) -> list[float]:
        assert self._thread is not None
        self._thread.join()
        if len(self._seen) != len(sent):
            raise RuntimeError(f"the append handler wrote {len(self._seen)} lines, expected {len(sent)}")
        return [(seen - sent[json.loads(line)["id"]]) * 1000 for seen, line in self._seen]


class ExecProbe:
    """Reads the lines the exec handler's program wrote, once all are there."""

    SCRIPT = 'echo "$(date +%s%N) $ELSABRO_EVENT_ID" >> "$1"'

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = 0
        self._deadline = 0.0

    def start(self, count: int, deadline: float) -> None:
        self._deadline = deadline

    def latencies_ms(self, sent: dict[str, float]) -> list[float]:
        while True:
            lines = self.path.read_bytes().splitlines() if self.path.exists() else []
            if len(lines) >= self.done + len(sent):
                break
            if time.monotonic() > self._deadline:
                raise TimeoutError(f"the exec handler ran for {len(lines) - self.done} of {len(sent)} events")
            time.sleep(0.01)
        new, self.done = lines[self.done :], len(lines)
        latencies = []
        for line in new:
            started_ns, event_id = line.split()
            latencies.append(int(started_ns) / 1e6 - sent[event_id.decode()] * 1000)
        return latencies


def handler_latency(
    world: World, daemon: Daemon, kind: str, plan: FanoutPlan, rate_per_s: float, how: str
) -> list[Figure]:
    """p50 and p99 publish-to-handler latency of one subscription, at `rate_per_s` offered."""
    project = world.project(f"fanout-{kind}")
    if kind == "append":
        probe: AppendProbe | ExecProbe = AppendProbe(project / "out.jsonl")
        handler: dict[str, Any] = {"type": "append", "path": "out.jsonl"}
    else:
        probe = ExecProbe(project / "out.txt")
        handler = {"type": "exec", "argv": ["sh", "-c", ExecProbe.SCRIPT, "sh", str(probe.path)]}
    _configured(
        world, f"fanout-{kind}", {"subscriptions": [{"name": kind, "topic": TOPIC, "handler": handler}]}
    )
    meter = Meter(daemon)

    def run(duration_s: float) -> tuple[list[float], float]:
        count = max(1, int(rate_per_s * duration_s))
        probe.start(count, time.monotonic() + count / rate_per_s + GRACE_S)
        sent, lag_ms = _publish_paced(world, project, rate_per_s, count)
        return probe.latencies_ms(sent), lag_ms

    run(plan.warmup_s)  # the project opens, the handler's first run
    p50: list[float] = []
    p99: list[float] = []
    for _ in range(plan.runs):
        meter.start()
        latencies, lag_ms = run(plan.duration_s)
        meter.stop()
        meter.lags_ms.append(lag_ms)
        p50.append(percentile(latencies, 0.50))
        p99.append(percentile(latencies, 0.99))
    note = (
        f"{kind} subscription, {rate_per_s:g} events/s offered one per request, {plan.duration_s:g} s/run; "
        f"{how}; {meter.describe()}"
    )
    return [
        Figure(f"fanout_{kind}_latency_p50_ms", SECTION, "ms", p50, note=note),
        Figure(f"fanout_{kind}_latency_p99_ms", SECTION, "ms", p99, note=note),
    ]


# -- webhooks ----------------------------------------------------------------------------------


def _webhook_project(world: World, receiver: Receiver, endpoints: int) -> Path:
    endpoint_list = [
        {
            "id": f"ep{i}",
            "url": f"http://127.0.0.1:{receiver.port}/ep/{i}",
            "events": ["*"],
            "format": "elsabro",
            "secret": "bench-secret",
        }
        for i in range(endpoints)
    ]
    return _configured(
        world, f"fanout-webhook-{endpoints}", {"events": {"webhooks": {"endpoints": endpoint_list}}}
    )


def _check_each_endpoint(answer: dict[str, Any], endpoints: int, events: int) -> None:
    """Every endpoint got every event once (the receiver counted the total already)."""
    per_path: dict[str, int] = {}
    for path, _, _ in answer["deliveries"]:
        per_path[path] = per_path.get(path, 0) + 1
    if len(per_path) != endpoints or set(per_path.values()) != {events}:
        raise RuntimeError(f"uneven deliveries over {endpoints} endpoints of {events} events: {per_path}")


def _batch(
    world: World, project: Path, receiver: Receiver, endpoints: int, events: int
) -> tuple[float, dict[str, Any]]:
    """One batch of `events`: deliveries/s from just before it is published to the last arrival."""
    started = time.time()
    world.client(project).publish_batch([_event() for _ in range(events)])
    answer = receiver.take(events * endpoints, GRACE_S)
    _check_each_endpoint(answer, endpoints, events)
    last = max(arrived for _, arrived, _ in answer["deliveries"])
    return events * endpoints / (last - started), answer


def webhook_rate(
    world: World, daemon: Daemon, receiver: Receiver, project: Path, endpoints: int, plan: FanoutPlan
) -> Figure:
    events = max(1, plan.batch_deliveries // endpoints)
    _batch(world, project, receiver, endpoints, max(1, events // 4))  # warm-up: connections, code paths
    meter = Meter(daemon, receiver)
    rates: list[float] = []
    for _ in range(plan.runs):
        meter.start()
        rate, answer = _batch(world, project, receiver, endpoints, events)
        meter.stop(answer)
        rates.append(rate)
    return Figure(
        f"webhook_{endpoints}ep_deliveries_per_s",
        SECTION,
        "deliveries/s",
        rates,
        note=f"{endpoints} endpoint(s) x {events} events published as one batch; {meter.describe()}",
    )


def webhook_latency(
    world: World, daemon: Daemon, receiver: Receiver, project: Path, endpoints: int, plan: FanoutPlan
) -> Figure:
    """p50 publish-to-arrival over every delivery, at a fixed offered number of deliveries/s.

    Runs right after webhook_rate on the same project, whose runs are its warm-up.
    """
    rate = plan.latency_deliveries_per_s / endpoints
    count = max(1, round(rate * plan.latency_duration_s))
    meter = Meter(daemon, receiver)
    p50: list[float] = []
    p99: list[float] = []
    for _ in range(plan.runs):
        meter.start()
        _, lag_ms = _publish_paced(world, project, rate, count)
        answer = receiver.take(count * endpoints, GRACE_S)
        meter.stop(answer)
        meter.lags_ms.append(lag_ms)
        _check_each_endpoint(answer, endpoints, count)
        latencies = [(arrived - sent_at) * 1000 for _, arrived, sent_at in answer["deliveries"]]
        p50.append(percentile(latencies, 0.50))
        p99.append(percentile(latencies, 0.99))
    return Figure(
        f"webhook_{endpoints}ep_latency_p50_ms",
        SECTION,
        "ms",
        p50,
        note=(
            f"{endpoints} endpoint(s), {rate:g} events/s offered "
            f"({plan.latency_deliveries_per_s:g} deliveries/s), {count} events/run; from time.time() "
            f"before the publish to the request's arrival, over every delivery; "
            f"p99 {statistics.median(p99):.1f} ms; {meter.describe()}"
        ),
    )


def measure(plan: FanoutPlan) -> list[Figure]:
    """Every fan-out figure, in a world and with a daemon of their own."""
    figures: list[Figure] = []
    world = World("fanout")
    daemon = Daemon(world)
    receiver: Receiver | None = None
    try:
        daemon.start()
        figures += handler_latency(
            world,
            daemon,
            "append",
            plan,
            plan.append_per_s,
            f"to the line being readable in the file (read every {TAIL_POLL_S * 1000:g} ms)",
        )
        figures += handler_latency(
            world,
            daemon,
            "exec",
            plan,
            plan.exec_per_s,
            f"`sh -c '{ExecProbe.SCRIPT}'`: to `date` running in the handler, spawning sh and date included",
        )
        receiver = Receiver(world.env)
        for endpoints in plan.endpoints:
            project = _webhook_project(world, receiver, endpoints)
            figures.append(webhook_rate(world, daemon, receiver, project, endpoints, plan))
            figures.append(webhook_latency(world, daemon, receiver, project, endpoints, plan))
    finally:
        if receiver is not None:
            receiver.close()
        daemon.stop()
        world.remove()
    return figures


if __name__ == "__main__":
    if sys.argv[1:] != ["receive"]:
        sys.exit(f"usage: {sys.argv[0]} receive")
    sys.exit(receive())
