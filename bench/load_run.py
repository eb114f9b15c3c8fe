"""A long load run against flapping webhook receivers: nothing lost, nothing stuck, memory
and file descriptors flat.

    .venv/bin/python bench/load_run.py [--duration-s 600] [--rate 1000] [--json OUT]

Everything runs in a throwaway world under /tmp (its own HOME, socket and project: never
the real HOME or a daemon the user runs), removed at the end. The project's config, in
place before the daemon first hears of the project, has:

  - ENDPOINTS webhook endpoints (`standard` format, so `webhook-id` is the event id), each
    on its own port of a local receiver process on 127.0.0.1 that FLAPS through a cycle of
    phases, in units of --flap-unit-s (1 s): 200 OK (8), 500 errors (3), 200 OK (6), slow
    (3: answers only after SLOW_S, past the endpoint's `timeout`), 200 OK (6), refused (3:
    not listening, open connections reset). Endpoint i runs 1/ENDPOINTS of a cycle behind
    endpoint i-1. Retries are short: `timeout` 500 ms, exponential backoff from 50 ms capped
    at 500 ms, 50 attempts (far more than the longest failing phase needs).
  - a durable subscription `load-append` (pattern `load.#`, append handler).

Publishers (--publishers processes, --threads threads each) send single events on a fixed
schedule at --rate events/s in total for --duration-s; a request that falls behind is sent
at once (the offered rate does not bend to the daemon), and every acknowledged (2xx) id is
recorded. Every --sample-s the daemon's RSS (/proc/<pid>/status VmRSS), open file
descriptors (len(os.listdir(/proc/<pid>/fd))) and every consumer's lag are sampled.

Then publishing stops, the receivers turn healthy for good, and the run waits (at most
--drain-timeout-s, 2 h: the consumers may be far behind; it gives up at once when a
consumer with work left has not moved for STUCK_S, 60 s) until every endpoint and the
subscription have handled every event. It passes when:

  - nothing is lost: every acknowledged id is in the log exactly once; sequences are 1..N
    without a gap and `elsabro.audit.verify` says intact
  - every stored `load.*` event reached every endpoint at least once, as the receiver saw
    it (a 200 answered on a live connection, by `webhook-id`), and the subscription handled
    each at least once; nothing was dead-lettered
  - nothing is stuck: all consumers drained (lag 0, nothing in flight) before the deadline
  - memory and file descriptors are flat. The rule, for RSS and for the fd count alike:
    samples taken while publishing; the warm-up is the first max(30 s, 10% of the
    duration) (at most a quarter of it); BASELINE is the median of the first 5 samples
    after the warm-up; END is the median of all samples taken in the second half of the
    publishing period (t >= duration / 2). Flat means |END / BASELINE - 1| <= 10%.

Also reported, not judged: each consumer's lag and how many events per second it handled
while publishing and while draining, and the daemon's CPU (cores) per sample.

Prints a JSON summary on stdout (and into --json OUT) and one human line on stderr; exits 1
if anything above fails. `run()` is the same for tests, which assert only the reliability
figures: speed and memory goals belong to benchmarks, never to timed tests.

Helpers are this file run as `load_run.py publish ...` and `load_run.py receive ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Daemon, Worker, World, report
from elsabro.core.errors import ElsabroError
from elsabro.core.settings import Settings
from elsabro.daemon.client import Client
from elsabro.store.audit import verify
from elsabro.store.segments import list_segments

ENDPOINTS = 3
PUBLISHERS = 4
THREADS = 4
SUBSCRIPTION = "load-append"
APPEND_FILE = "sub-load.jsonl"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT_TIMEOUT_MS = 500
SLOW_S = 2 * ENDPOINT_TIMEOUT_MS / 1000
RETRY = {"maxAttempts": 50, "backoff": "exponential", "initialDelay": 50, "maxDelay": 500}
PHASES = (("ok", 8), ("error", 3), ("ok", 6), ("slow", 3), ("ok", 6), ("refused", 3))
CYCLE_UNITS = sum(units for _, units in PHASES)
STUCK_S = 60.0  # no consumer moved for this long while draining: stuck
ANSWER_S = 60.0  # for a helper process to answer a command
LATE_S = 1.0  # a publisher stops this long after the end of its schedule, however far behind
FLAT_TOLERANCE = 0.10
BASELINE_SAMPLES = 5

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


# -- the flapping receiver (its own process) ------------------------------------------------


class Endpoint:
    """One port of the receiver, flapping through PHASES until it is told to be healthy."""

    def __init__(self, index: int, count: int, unit_s: float) -> None:
        self.index = index
        self.unit_s = unit_s
        self.offset_units = index * CYCLE_UNITS / count
        self.port = 0
        self.mode = "ok"
        self.healthy = False
        self.server: asyncio.base_events.Server | None = None
        self.transports: set[asyncio.Transport] = set()
        self.ids: set[str] = set()
        self.counts: Counter[str] = Counter()

    def mode_at(self, elapsed_s: float) -> str:
        if self.healthy:
            return "ok"
        position = (elapsed_s / self.unit_s + self.offset_units) % CYCLE_UNITS
        for mode, units in PHASES:
            if position < units:
                return mode
            position -= units
        return "ok"

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Receiving(self), "127.0.0.1", self.port, reuse_address=True, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def switch(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.counts[f"phase {mode}"] += 1
        if mode == "refused":
            assert self.server is not None
            self.server.close()
            self.server = None
            for transport in list(self.transports):
                transport.abort()  # a reset, as a crashed server's
        elif self.mode == "refused":
            try:
                await self.listen()
            except OSError:  # the port is taken for now: refused a little longer
                self.counts["rebind failed"] += 1
                return
        self.mode = mode

    def answer(self, transport: asyncio.Transport, event_id: str) -> None:
        if transport.is_closing():  # the client gave up (its timeout): not a delivery
            self.counts["slow, client gone"] += 1
            return
        self.ids.add(event_id)
        self.counts["200"] += 1
        transport.write(OK)

    def stats(self) -> dict[str, Any]:
        return {"port": self.port, "mode": self.mode, "unique_ids": len(self.ids), **self.counts}


class Receiving(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive: enough for httpx's POSTs."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.endpoint.transports.add(transport)
        if self.endpoint.mode == "refused":
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.endpoint.transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            headers = {}
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.request(headers.get(b"webhook-id", b"").decode())

    def request(self, event_id: str) -> None:
        endpoint, transport = self.endpoint, self.transport
        assert transport is not None
        endpoint.counts["requests"] += 1
        if endpoint.mode == "ok":
            endpoint.answer(transport, event_id)
        elif endpoint.mode == "error":
            endpoint.counts["500"] += 1
            transport.write(ERROR)
        elif endpoint.mode == "slow":
            endpoint.counts["slow"] += 1
            asyncio.get_running_loop().call_later(SLOW_S, endpoint.answer, transport, event_id)
        else:
            transport.abort()


async def _flap(endpoints: list[Endpoint]) -> None:
    started = time.monotonic()
    while True:
        for endpoint in endpoints:
            await endpoint.switch(endpoint.mode_at(time.monotonic() - started))
        await asyncio.sleep(0.02)


def _command(endpoints: list[Endpoint], line: str) -> str:
    command, *args = line.split()
    if command == "stats":
        return json.dumps([endpoint.stats() for endpoint in endpoints])
    if command == "healthy":
        for endpoint in endpoints:
            endpoint.healthy = True
        return "healthy"
    if command == "dump":
        for endpoint in endpoints:
            Path(args[0], f"ep{endpoint.index}.ids").write_text("".join(i + "\n" for i in endpoint.ids))
        return "dumped"
    raise SystemExit(f"unknown command {command!r}")


async def _receive(count: int, unit_s: float) -> None:
    endpoints = [Endpoint(i, count, unit_s) for i in range(count)]
    for endpoint in endpoints:
        await endpoint.listen()
    flapping = asyncio.get_running_loop().create_task(_flap(endpoints))
    print("ready " + ",".join(str(endpoint.port) for endpoint in endpoints), flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        print(_command(endpoints, line), flush=True)
    flapping.cancel()


def receive(count: int, unit_s: float) -> int:
    """The receiver: prints `ready PORT,PORT,...`; answers `stats`, `healthy` and `dump DIR`."""
    asyncio.run(_receive(count, unit_s))
    return 0


# -- the publisher worker (its own process) -------------------------------------------------


def publish(project: str, rate: float, duration_s: float, threads: int, out: str) -> int:
    """Prints `ready`; on `go`, publishes on schedule, writes acked ids to `out`, prints a summary."""
    settings = Settings.from_env()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    total = int(rate * duration_s)
    slots = itertools.count()  # next() on a count is atomic under the GIL
    acked: list[str] = []
    errors: Counter[str] = Counter()
    lags = [0.0]
    start = time.perf_counter() + 0.05
    stop = start + duration_s + LATE_S

    def work() -> None:
        client = Client(settings, project)
        while (index := next(slots)) < total and time.perf_counter() < stop:
            due = start + index / rate
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            lags.append(time.perf_counter() - due)
            try:
                acked.append(client.publish({"topic": "load.event", "payload": {"index": index}})["id"])
            except ElsabroError as exc:
                errors[type(exc).__name__] += 1

    pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed_s = time.perf_counter() - start
    Path(out).write_text("".join(i + "\n" for i in acked))
    summary = {
        "offered": total,
        "sent": len(lags) - 1,
        "acked": len(acked),
        "errors": dict(errors),
        "elapsed_s": elapsed_s,
        "max_lag_s": max(lags),
    }
    print(json.dumps(summary), flush=True)
    return 0


# -- the run ------------------------------------------------------------------------------


@dataclass
class Plan:
    duration_s: float = 600.0
    rate: float = 1000.0
    publishers: int = PUBLISHERS
    threads: int = THREADS
    endpoints: int = ENDPOINTS
    sample_s: float = 5.0
    flap_unit_s: float = 1.0
    drain_timeout_s: float = 7200.0

    @property
    def warmup_s(self) -> float:
        return min(max(30.0, 0.1 * self.duration_s), self.duration_s / 4)


@dataclass
class Sample:
    t_s: float  # since publishing began
    rss_mib: float
    fds: int
    lags: dict[str, int]
    cpu_cores: float  # the daemon's CPU time over wall time since the previous sample


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    drain_samples: list[Sample] = field(default_factory=list)
    publishing: dict[str, Any] = field(default_factory=dict)
    drain_s: float = 0.0
    drained: bool = False
    stuck: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class LoadRun:
    def __init__(self, plan: Plan, progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.progress = progress
        self.world = World("load")
        self.project = self.world.project("load")
        self.dot = self.project / ".elsabro"
        self.daemon = Daemon(self.world)
        self.receiver: Worker | None = None
        self.publishers: list[Worker] = []
        self.outcome = Outcome()
        self._cpu = (time.monotonic(), 0.0)

    def client(self) -> Client:
        return self.world.client(self.project)

    def start(self) -> None:
        argv = [sys.executable, __file__, "receive", str(self.plan.endpoints), str(self.plan.flap_unit_s)]
        self.receiver = Worker(argv, self.world.env, "the receiver")
        word, ports = self.receiver.read(ANSWER_S).split()
        assert word == "ready", word
        self.configure([int(port) for port in ports.split(",")])
        self.daemon.start()
        self.consumers()  # opens the project: the config applies, the consumers start
        plan = self.plan
        for n in range(plan.publishers):
            argv = [sys.executable, __file__, "publish", str(self.project), str(plan.rate / plan.publishers)]
            argv += [str(plan.duration_s), str(plan.threads), str(self.world.root / f"acked-{n}.txt")]
            self.publishers.append(Worker(argv, self.world.env, f"publisher {n}"))
        for worker in self.publishers:
            if (line := worker.read(ANSWER_S)) != "ready":
                raise RuntimeError(f"{worker.name} said {line!r}")

    def configure(self, ports: list[int]) -> None:
        endpoints = [
            {
                "id": f"ep{i}",
                "url": f"http://127.0.0.1:{port}/hook",
                "events": ["load.*"],
                "format": "standard",
                "secret": SECRET,
                "timeout": ENDPOINT_TIMEOUT_MS,
            }
            for i, port in enumerate(ports)
        ]
        config = {
            "events": {"webhooks": {"endpoints": endpoints, "retry": RETRY}},
            "subscriptions": [
                {
                    "name": SUBSCRIPTION,
                    "pattern": "load.#",
                    "handler": {"type": "append", "path": APPEND_FILE},
                    "options": {"durable": True},
                }
            ],
        }
        self.dot.mkdir(mode=0o700, exist_ok=True)
        (self.dot / "config.json").write_text(json.dumps(config, indent=1))
        self.world.trust(self.project)

    def consumers(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
        return rows

    def sample(self, began: float) -> Sample:
        lags = {row["name"]: row["lag"] for row in self.consumers()}
        now, cpu_s = time.monotonic(), self.daemon.cpu_s()
        cores = (cpu_s - self._cpu[1]) / (now - self._cpu[0]) if now > self._cpu[0] else 0.0
        self._cpu = (now, cpu_s)
        return Sample(now - began, self.daemon.memory_mib(), self.daemon.open_fds(), lags, cores)

    # -- phases -------------------------------------------------------------------------------

    def publish(self) -> None:
        plan, outcome = self.plan, self.outcome
        for worker in self.publishers:
            worker.send("go")
        began = time.monotonic()
        self._cpu = (began, self.daemon.cpu_s())
        next_sample = began + plan.sample_s
        while time.monotonic() < began + plan.duration_s:
            time.sleep(max(0.0, min(next_sample, began + plan.duration_s) - time.monotonic()))
            if time.monotonic() >= next_sample:
                outcome.samples.append(sample := self.sample(began))
                next_sample += plan.sample_s
                self.progress(
                    f"t={sample.t_s:.0f}s rss={sample.rss_mib:.1f}MiB fds={sample.fds} "
                    f"cpu={sample.cpu_cores:.2f} lags={sample.lags}"
                )
        answers = [json.loads(worker.read(ANSWER_S + LATE_S)) for worker in self.publishers]
        elapsed_s = max(answer["elapsed_s"] for answer in answers)
        errors: Counter[str] = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        acked = sum(answer["acked"] for answer in answers)
        outcome.publishing = {
            "offered_rate": plan.rate,
            "achieved_rate": round(acked / elapsed_s, 1),
            "events_offered": sum(answer["offered"] for answer in answers),
            "events_sent": sum(answer["sent"] for answer in answers),
            "events_acknowledged": acked,
            "publish_errors": dict(errors),
            "max_send_lag_s": round(max(answer["max_lag_s"] for answer in answers), 3),
            "publishing_s": round(elapsed_s, 1),
        }

    def drain(self) -> None:
        """Receivers healthy for good; wait until every consumer has handled everything.

        A consumer whose cursor has not moved for STUCK_S while it still has work is stuck:
        the wait ends there. Past --drain-timeout-s the wait ends too (too slow, not stuck).
        """
        assert self.receiver is not None
        self.receiver.send("healthy")
        assert self.receiver.read(ANSWER_S) == "healthy"
        outcome = self.outcome
        began = time.monotonic()
        moves: dict[str, tuple[int, float]] = {}  # consumer: (cursor, when it last moved)
        while True:
            rows = self.consumers()
            busy = [row for row in rows if row["lag"] or row["inFlight"] is not None]
            if not busy:
                outcome.drained = True
                break
            now = time.monotonic()
            for row in rows:
                if moves.get(row["name"], (None,))[0] != row["cursor"]:
                    moves[row["name"]] = (row["cursor"], now)
            outcome.stuck = [row["name"] for row in busy if now - moves[row["name"]][1] > STUCK_S]
            if outcome.stuck or now - began > self.plan.drain_timeout_s:
                why = f"stuck for {STUCK_S:g} s: {outcome.stuck}" if outcome.stuck else "deadline passed"
                outcome.failures.append(f"not drained after {now - began:.0f} s ({why}): {busy}")
                break
            if not outcome.drain_samples or now - began - outcome.drain_samples[-1].t_s >= self.plan.sample_s:
                outcome.drain_samples.append(sample := self.sample(began))
                self.progress(f"draining t={sample.t_s:.0f}s cpu={sample.cpu_cores:.2f} lags={sample.lags}")
            time.sleep(0.2)
        outcome.drain_s = time.monotonic() - began

    def throughput(self) -> dict[str, Any]:
        """Per consumer: how far behind it fell, and how fast it handled events under load and after."""
        outcome = self.outcome
        if not outcome.samples:
            return {}
        last = outcome.samples[-1]
        stored_during_load = outcome.publishing.get("events_acknowledged", 0)
        result = {}
        for name, lag in last.lags.items():
            # Drained at the first drain sample that saw it at lag 0 (the end of the drain at the latest).
            drained_s = next((s.t_s for s in outcome.drain_samples if s.lags.get(name) == 0), outcome.drain_s)
            result[name] = {
                "lag_at_end_of_publishing": lag,
                "max_lag": max(s.lags.get(name, 0) for s in outcome.samples + outcome.drain_samples),
                "handled_per_s_while_publishing": round((stored_during_load - lag) / last.t_s, 1),
                "drained_after_s": round(drained_s, 1) if outcome.drained else None,
                "handled_per_s_while_draining": round(lag / drained_s, 1)
                if outcome.drained and drained_s
                else None,
            }
        return result

    # -- checks -------------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        records = []
        for _, path in list_segments(self.dot / "events"):
            records.extend(json.loads(line) for line in path.read_bytes().splitlines())
        acked = set()
        for path in self.world.root.glob("acked-*.txt"):
            acked.update(path.read_text().split())
        ids = [record["id"] for record in records]
        load_ids = {record["id"] for record in records if record["topic"].startswith("load.")}
        report = verify(self.dot / "events")
        result = {
            "events_stored": len(records),
            "lost": len(acked - set(ids)),
            "duplicated_in_log": len(ids) - len(set(ids)),
            "gapless": [r["sequence"] for r in records] == list(range(1, len(records) + 1)),
            "verify_intact": report.intact and report.records == len(records),
            "endpoints": self.check_endpoints(load_ids),
            "subscription": self.check_subscription(load_ids),
            "dead_letters": _count_lines(self.dot / "deadletters.jsonl"),
            "delivery_attempts_logged": _count_lines(self.dot / "deliveries.jsonl"),
        }
        failures = self.outcome.failures
        for key in ("lost", "duplicated_in_log", "dead_letters"):
            if result[key]:
                failures.append(f"{key}: {result[key]}")
        for key in ("gapless", "verify_intact"):
            if not result[key]:
                failures.append(f"{key} is false ({report.finding})")
        for name, figures in [*result["endpoints"].items(), ("subscription", result["subscription"])]:
            if figures["missing"]:
                failures.append(f"{name}: {figures['missing']} events never delivered")
        return result

    def check_endpoints(self, load_ids: set[str]) -> dict[str, Any]:
        assert self.receiver is not None
        self.receiver.send("stats")
        stats = json.loads(self.receiver.read(ANSWER_S))
        self.receiver.send(f"dump {self.world.root}")
        assert self.receiver.read(ANSWER_S) == "dumped"
        result = {}
        for index, counts in enumerate(stats):
            received = set((self.world.root / f"ep{index}.ids").read_text().split())
            missing = load_ids - received
            result[f"ep{index}"] = {
                "missing": len(missing),
                "missing_examples": sorted(missing)[:5],
                "delivered_events": len(received & load_ids),
                "redelivered": counts.get("200", 0) - counts.get("unique_ids", 0),
                **{k: v for k, v in counts.items() if k not in ("port", "mode")},
            }
        return result

    def check_subscription(self, load_ids: set[str]) -> dict[str, Any]:
        path = self.project / APPEND_FILE
        lines = path.read_bytes().splitlines() if path.exists() else []
        handled = [json.loads(line)["id"] for line in lines]
        return {
            "missing": len(load_ids - set(handled)),
            "handled": len(handled),
            "redelivered": len(handled) - len(set(handled)),
        }

    def flatness(self) -> dict[str, Any]:
        """The rule of the docstring, for RSS and fds."""
        plan = self.plan
        after_warmup = [s for s in self.outcome.samples if s.t_s >= plan.warmup_s][:BASELINE_SAMPLES]
        second_half = [s for s in self.outcome.samples if s.t_s >= plan.duration_s / 2]
        result: dict[str, Any] = {"warmup_s": plan.warmup_s, "tolerance": FLAT_TOLERANCE}
        for key in ("rss_mib", "fds"):
            if not after_warmup or not second_half:
                result[key] = {"flat": None, "why": "too few samples"}
                continue
            start = statistics.median(getattr(s, key) for s in after_warmup)
            end = statistics.median(getattr(s, key) for s in second_half)
            change = end / start - 1
            flat = abs(change) <= FLAT_TOLERANCE
            result[key] = {
                "start": round(start, 2),
                "end": round(end, 2),
                "change": round(change, 4),
                "flat": flat,
            }
            if not flat:
                self.outcome.failures.append(f"{key} not flat: {start:.1f} -> {end:.1f} ({change:+.1%})")
        return result

    def close(self) -> None:
        for worker in self.publishers:
            worker.close()
        with contextlib.suppress(Exception):
            self.daemon.stop()
        if self.receiver is not None:
            self.receiver.close()
        self.world.remove()


def _count_lines(path: Path) -> int:
    count = 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def run(plan: Plan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole run in a throwaway world; the summary (`passed` is False on any failure)."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    load = LoadRun(plan, say)
    result: dict[str, Any] = {"plan": {**plan.__dict__, "endpoint_retry": RETRY, "phases": PHASES}}
    try:
        load.start()
        say(f"publishing at {plan.rate:g}/s for {plan.duration_s:g} s")
        load.publish()
        say(f"published: {load.outcome.publishing}; draining")
        load.drain()
        final = load.sample(time.monotonic())
        result.update(load.outcome.publishing)
        result.update(load.check())
        result["flatness"] = load.flatness()
        result["consumers"] = load.throughput()
        flat = result["flatness"]
        result["rss_start_mib"], result["rss_end_mib"] = (
            flat["rss_mib"].get("start"),
            flat["rss_mib"].get("end"),
        )
        result["fd_start"], result["fd_end"] = flat["fds"].get("start"), flat["fds"].get("end")
        result["deliveries_received"] = sum(e.get("200", 0) for e in result["endpoints"].values())
        samples = load.outcome.samples
        result["daemon_cpu_cores_while_publishing"] = round(
            statistics.median(s.cpu_cores for s in samples), 2
        )
        result["after_drain"] = {"rss_mib": round(final.rss_mib, 1), "fds": final.fds}
    except (TimeoutError, RuntimeError, OSError, ValueError, AssertionError, ElsabroError) as exc:
        load.outcome.failures.append(f"error: {type(exc).__name__}: {exc}")
    finally:
        load.close()
    outcome = load.outcome
    result.update(
        drained=outcome.drained,
        drain_s=round(outcome.drain_s, 1),
        stuck=outcome.stuck,
        samples=asdict_sample(outcome.samples),
        drain_samples=asdict_sample(outcome.drain_samples),
        failures=outcome.failures,
        passed=not outcome.failures,
        total_time_s=round(time.perf_counter() - started, 1),
    )
    return result


def asdict_sample(samples: list[Sample]) -> list[dict[str, Any]]:
    return [
        {
            "t_s": round(s.t_s, 1),
            "rss_mib": round(s.rss_mib, 1),
            "fds": s.fds,
            "cpu_cores": round(s.cpu_cores, 2),
            "lags": s.lags,
        }
        for s in samples
    ]


def human(result: dict[str, Any]) -> str:
    flat = result.get("flatness", {})
    rss, fds = flat.get("rss_mib", {}), flat.get("fds", {})
    return (
        f"load_run {'PASS' if result['passed'] else 'FAIL'}: {result.get('achieved_rate')}/s achieved of "
        f"{result['plan']['rate']:g}/s offered, {result.get('events_acknowledged')} acked, "
        f"lost {result.get('lost')}, drained {result['drained']} in {result['drain_s']} s, "
        f"stuck {result['stuck']}, RSS {rss.get('start')} -> {rss.get('end')} MiB, "
        f"fds {fds.get('start')} -> {fds.get('end')}; failures: {result['failures'] or 'none'}"
    )


def main(argv: list[str] | None = None) -> int:
    defaults = Plan()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=defaults.duration_s)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="events/s offered in total")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--publishers", type=int, default=defaults.publishers)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="per publisher process")
    parser.add_argument("--endpoints", type=int, default=defaults.endpoints)
    parser.add_argument("--sample-s", type=float, default=defaults.sample_s)
    parser.add_argument("--flap-unit-s", type=float, default=defaults.flap_unit_s)
    parser.add_argument("--drain-timeout-s", type=float, default=defaults.drain_timeout_s)
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like an error would: the daemon is stopped and the world removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    plan = Plan(
        args.duration_s,
        args.rate,
        args.publishers,
        args.threads,
        args.endpoints,
        args.sample_s,
        args.flap_unit_s,
        args.drain_timeout_s,
    )

    def progress(message: str) -> None:
        print(f"[load_run {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    result = run(plan, progress)
    return report(result, args.json, human)


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        _, _, project, rate, duration, threads, out = sys.argv
        sys.exit(publish(project, float(rate), float(duration), int(threads), out))
    if sys.argv[1:2] == ["receive"]:
        sys.exit(receive(int(sys.argv[2]), float(sys.argv[3])))
    sys.exit(main())
