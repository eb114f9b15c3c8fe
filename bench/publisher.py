"""A publishing worker process for the ingest benchmark (bench/ingest_rate.py drives it).

Runs in its own process so that concurrent publishers are really concurrent (no shared
GIL). It imports everything, prints `ready`, then obeys one command per stdin line and
answers each with one JSON line:

    run DURATION_S                  one event per request, back to back
    batch DURATION_S SIZE           batches of SIZE events, back to back
    paced RATE_PER_S DURATION_S N   one event per request on a fixed schedule, N threads

The daemon and project come from the environment (ELSABRO_SOCKET) and argv[1].
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import threading
import time
from typing import Any

from elsabro.core.settings import Settings
from elsabro.daemon.client import Client

# Padding that makes a stored record about 500 bytes, like the scan benchmark's events.
PAYLOAD_TEXT = "x" * 240


def make_event(index: int) -> dict[str, Any]:
    return {
        "topic": "bench.ingest",
        "correlationId": "bench-session-0001",
        "payload": {"index": index, "text": PAYLOAD_TEXT},
    }


def run_single(client: Client, duration_s: float) -> dict[str, Any]:
    """One event per request until the duration is over; every one is durable when counted."""
    count = 0
    started = time.perf_counter()
    deadline = started + duration_s
    while time.perf_counter() < deadline:
        client.publish(make_event(count))
        count += 1
    return {"events": count, "elapsed_s": time.perf_counter() - started}


def run_batches(client: Client, duration_s: float, size: int) -> dict[str, Any]:
    """Atomic batches of `size` until the duration is over (at least one batch)."""
    count = 0
    started = time.perf_counter()
    deadline = started + duration_s
    while count == 0 or time.perf_counter() < deadline:
        stored = client.publish_batch([make_event(count + i) for i in range(size)])
        count += len(stored)
    return {"events": count, "elapsed_s": time.perf_counter() - started}


def run_paced(
    settings: Settings, project: str, rate_per_s: float, duration_s: float, threads: int
) -> dict[str, Any]:
    """Requests sent on a fixed schedule; latency counts from the scheduled send time.

    Counting from the schedule, not from the actual send, keeps a stalled request from
    hiding the wait of those queued behind it (coordinated omission).
    """
    total = max(1, int(rate_per_s * duration_s))
    latencies_s: list[float] = [0.0] * total
    lags_s: list[float] = [0.0] * total
    slots = itertools.count()  # next() on a count is atomic under the GIL
    start = time.perf_counter() + 0.05  # every thread is up before the first slot

    def work() -> None:
        client = Client(settings, project)
        while (index := next(slots)) < total:
            due = start + index / rate_per_s
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lags_s[index] = time.perf_counter() - due
            client.publish(make_event(index))
            latencies_s[index] = time.perf_counter() - due

    pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=duration_s * 10 + 60)
    if any(thread.is_alive() for thread in pool):
        raise RuntimeError("paced publishing did not finish in time")
    elapsed_s = time.perf_counter() - start
    return {
        "latencies_ms": [s * 1000 for s in latencies_s],
        "median_send_lag_ms": statistics.median(lags_s) * 1000,
        "max_send_lag_ms": max(lags_s) * 1000,
        "achieved_per_s": total / elapsed_s,
        "events": total,
    }


def main(argv: list[str]) -> int:
    project = argv[1]
    settings = Settings.from_env()
    client = Client(settings, project)
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            result = run_single(client, float(args[0]))
        elif command == "batch":
            result = run_batches(client, float(args[0]), int(args[1]))
        elif command == "paced":
            result = run_paced(settings, project, float(args[0]), float(args[1]), int(args[2]))
        elif command == "quit":
            return 0
        else:
            raise SystemExit(f"unknown command {command!r}")
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
