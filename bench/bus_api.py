"""The Python EventBus (daemon/elsabro/bus/api.py) in its two modes: publish latency, delivery rate.

Client mode talks to the bench's daemon over its socket, with start_daemon=False: a bus
that started a daemon of its own would measure the wrong one. Embedded modes run the log
in this process. Each mode runs in one asyncio.run, as a program using the bus would.

  publish   `await bus.publish(...)` one at a time, small payload; each returns once its
            event is fsynced. Embedded file mode gets a project directory of its own: a
            log has one writer, and the daemon serves the client mode's project.
  delivery  one subscriber, an async handler that counts; N events published with
            publish_batch in chunks, timed from the first publish to the last event handled
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from common import Daemon, Figure, World, percentile
from elsabro import EventBus, StoredEvent

SECTION = "bus"
TOPIC = "bench.bus"
# Slower than this is broken, not slow: deadlines are GRACE_S plus the work at this rate.
FLOOR_PER_S = 50.0
GRACE_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class BusPlan:
    publishes: int  # sequential publishes in one latency run
    warmup: int  # publishes before the first latency run: the log opens, code paths warm up
    runs: int
    delivery_events: int  # N of one delivery run
    chunk: int = 500  # events per publish_batch in a delivery run


def _deadline_s(plan: BusPlan) -> float:
    events = plan.warmup + plan.runs * (plan.publishes + plan.delivery_events) + plan.chunk
    return GRACE_S + events / FLOOR_PER_S


async def _publish_latencies(bus: EventBus, plan: BusPlan) -> list[list[float]]:
    """Per run, the ms of each `await bus.publish(...)`, back to back."""
    for n in range(plan.warmup):
        await bus.publish(TOPIC + ".publish", {"n": n})
    runs: list[list[float]] = []
    for _ in range(plan.runs):
        latencies: list[float] = []
        for n in range(plan.publishes):
            started_ns = time.perf_counter_ns()
            await bus.publish(TOPIC + ".publish", {"n": n})
            latencies.append((time.perf_counter_ns() - started_ns) / 1e6)
        runs.append(latencies)
    return runs


async def _delivery_rate(bus: EventBus, events: int, chunk: int) -> float:
    """Events/s of one run. A fresh (non-durable) subscription starts at the log's end, so
    it sees exactly this run's events; it checks they come each once and in order."""
    handled, last_handled, problem = 0, 0.0, ""
    done = asyncio.Event()

    async def count(event: StoredEvent) -> None:
        nonlocal handled, last_handled, problem
        if event.payload["n"] != handled:  # a gap, a repeat or a reorder: the rate means nothing
            problem = f"expected event {handled}, got {event.payload['n']}"
            done.set()
            return
        handled += 1
        if handled == events:
            last_handled = time.perf_counter()
            done.set()

    subscription = await bus.subscribe(TOPIC, count)
    try:
        started = time.perf_counter()
        for first in range(0, events, chunk):
            await bus.publish_batch(
                [{"topic": TOPIC, "payload": {"n": n}} for n in range(first, min(events, first + chunk))]
            )
        try:
            await asyncio.wait_for(done.wait(), GRACE_S + events / FLOOR_PER_S)
        except asyncio.TimeoutError:
            raise TimeoutError(f"bus delivery: {handled} of {events} events handled in time") from None
    finally:
        await bus.unsubscribe(subscription.id)
    if problem:
        raise RuntimeError(f"bus delivery ({bus.mode}): {problem}")
    return events / (last_handled - started)


async def _delivery_runs(bus: EventBus, plan: BusPlan, daemon: Daemon | None) -> tuple[list[float], str]:
    """A warm-up run, then `plan.runs`; and who was busy: the CPU of this process (and the daemon)."""
    await _delivery_rate(bus, plan.chunk, plan.chunk)
    wall, own_cpu = time.perf_counter(), time.process_time()
    daemon_cpu = daemon.cpu_s() if daemon else 0.0
    rates = [await _delivery_rate(bus, plan.delivery_events, plan.chunk) for _ in range(plan.runs)]
    wall = time.perf_counter() - wall
    busy = f"this process's CPU {(time.process_time() - own_cpu) / wall:.2f} cores"
    if daemon:
        busy += f", daemon CPU {(daemon.cpu_s() - daemon_cpu) / wall:.2f} cores"
    return rates, busy


def _bounded(work: Callable[[], Awaitable[T]], plan: BusPlan, what: str) -> T:
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(work(), _deadline_s(plan))
        except asyncio.TimeoutError:
            raise TimeoutError(f"bus {what}: not done within {_deadline_s(plan):.0f} s") from None

    return asyncio.run(bounded())


def _publish_figures(mode: str, runs: list[list[float]], how: str) -> list[Figure]:
    return [
        Figure(f"bus_{mode}_publish_p{q}_ms", SECTION, "ms", [percentile(r, q / 100) for r in runs], note=how)
        for q in (50, 99)
    ]


def measure(world: World, daemon: Daemon, plan: BusPlan) -> list[Figure]:
    async def client() -> tuple[list[list[float]], tuple[list[float], str]]:
        project = world.project("bus-client")
        async with EventBus(project, settings=world.settings, start_daemon=False) as bus:
            return await _publish_latencies(bus, plan), await _delivery_runs(bus, plan, daemon)

    async def embedded_file() -> list[list[float]]:
        project = world.project("bus-embedded-file")  # never named to the daemon: free to open
        async with EventBus.embedded("file", project, settings=world.settings) as bus:
            return await _publish_latencies(bus, plan)

    async def embedded_memory() -> tuple[list[float], str]:
        async with EventBus.embedded(settings=world.settings) as bus:
            return await _delivery_runs(bus, plan, None)

    client_latencies, (client_rates, client_busy) = _bounded(client, plan, "client mode")
    file_latencies = _bounded(embedded_file, plan, "embedded file mode")
    memory_rates, memory_busy = _bounded(embedded_memory, plan, "embedded memory mode")
    each = f"{plan.publishes} sequential publishes/run after {plan.warmup}, payload {{'n': int}}"
    delivery = f"1 async subscriber, {plan.delivery_events} events/run in publish_batch of {plan.chunk}"
    return [
        *_publish_figures("client", client_latencies, f"client mode, through the daemon; {each}"),
        *_publish_figures("embedded_file", file_latencies, f"embedded file store, fsynced; {each}"),
        Figure(
            "bus_client_delivery_events_per_s",
            SECTION,
            "events/s",
            client_rates,
            note=f"client mode; {delivery}, first publish to last handled; {client_busy}",
        ),
        Figure(
            "bus_embedded_delivery_events_per_s",
            SECTION,
            "events/s",
            memory_rates,
            note=f"embedded memory store; {delivery}, first publish to last handled; {memory_busy}",
        ),
    ]
