"""Ingest: durable events/s from concurrent publishing processes, batches, and ack latency.

Every figure counts only acknowledged events, and the daemon acknowledges only after
fdatasync: these are durable rates. Publishers are separate processes (bench/publisher.py)
spawned once per figure and reused for the warm-up and every run, so that spawning 16
interpreters on a 2-core machine is not part of any run.
"""

from __future__ import annotations

import json
import selectors
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from common import Daemon, Figure, Target, World, percentile

SECTION = "ingest"
PUBLISHER = Path(__file__).resolve().parent / "publisher.py"
# A worker that does not answer a command within its duration plus this is stuck.
GRACE_S = 120.0


@dataclass(frozen=True)
class IngestPlan:
    """How long and how often to measure."""

    duration_s: float
    warmup_s: float
    runs: int
    concurrency: tuple[int, ...] = (1, 4, 16)
    batch_size: int = 1000
    offered_per_s: float = 1000.0
    latency_duration_s: float = 5.0


class Publishers:
    """A set of publisher processes for one project, driven in lock step."""

    def __init__(self, world: World, project: Path, count: int) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        try:
            for _ in range(count):
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, str(PUBLISHER), str(project)],
                        env=world.env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for process in self.processes:
                if self._readline(process.stdout, GRACE_S).strip() != "ready":
                    raise RuntimeError("a publisher did not start")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _readline(stream: IO[str] | None, timeout_s: float) -> str:
        """One line, or an error after the deadline (never a wait without end).

        Each command gets exactly one line back, so nothing waits in the text buffer
        when the descriptor is polled.
        """
        assert stream is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise TimeoutError(f"a publisher did not answer within {timeout_s} s")
        line = stream.readline()
        if not line:
            raise RuntimeError("a publisher exited early")
        return line

    def command(self, line: str, duration_s: float) -> list[dict[str, Any]]:
        """Send one command to all at once, then collect every answer."""
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(line + "\n")
            process.stdin.flush()
        deadline = time.monotonic() + duration_s + GRACE_S
        return [
            json.loads(self._readline(p.stdout, max(0.1, deadline - time.monotonic())))
            for p in self.processes
        ]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                if process.stdin is not None:
                    process.stdin.close()  # end of commands: the worker exits
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def _rate(answers: list[dict[str, Any]]) -> float:
    """Events/s of one run: all acked events over the longest publisher's time."""
    return float(sum(a["events"] for a in answers) / max(a["elapsed_s"] for a in answers))


def _runs(
    publishers: Publishers, daemon: Daemon, command: str, duration_s: float, runs: int
) -> tuple[list[list[dict[str, Any]]], str]:
    """`runs` runs of one command, and how busy the daemon was during them.

    The daemon's CPU use says who the bottleneck is: near 1 core, its single event
    loop; well below, the publishers or the disk.
    """
    answers, cores = [], []
    for _ in range(runs):
        cpu_s, started = daemon.cpu_s(), time.perf_counter()
        answers.append(publishers.command(command, duration_s))
        cores.append((daemon.cpu_s() - cpu_s) / (time.perf_counter() - started))
    return answers, f"daemon CPU {statistics.median(cores):.2f} cores"


def concurrent_rate(world: World, daemon: Daemon, project: Path, processes: int, plan: IngestPlan) -> Figure:
    publishers = Publishers(world, project, processes)
    try:
        publishers.command(f"run {plan.warmup_s}", plan.warmup_s)
        answers, busy = _runs(publishers, daemon, f"run {plan.duration_s}", plan.duration_s, plan.runs)
    finally:
        publishers.close()
    return Figure(
        f"ingest_{processes}proc_events_per_s",
        SECTION,
        "events/s",
        [_rate(a) for a in answers],
        Target(">=", 5000) if processes == 1 else None,
        f"{processes} process(es), 1 event/request, a new connection each, {plan.duration_s:g} s/run; {busy}",
    )


def batch_rate(world: World, daemon: Daemon, project: Path, plan: IngestPlan) -> Figure:
    publishers = Publishers(world, project, 1)
    command = f"batch {plan.duration_s} {plan.batch_size}"
    try:
        publishers.command(f"batch {plan.warmup_s} {plan.batch_size}", plan.warmup_s)
        answers, busy = _runs(publishers, daemon, command, plan.duration_s, plan.runs)
    finally:
        publishers.close()
    return Figure(
        "ingest_batch_events_per_s",
        SECTION,
        "events/s",
        [_rate(a) for a in answers],
        Target(">=", 50_000),
        f"1 process, {plan.batch_size} events/batch, back to back; {busy}",
    )


def _threads_needed(publishers: Publishers, plan: IngestPlan) -> tuple[int, str]:
    """One thread if it keeps the schedule, else several connections in flight.

    Keeping the schedule means sending on time, not only reaching the rate in the end:
    a thread whose requests typically start late is measuring its own queue.
    """
    [probe] = publishers.command(f"paced {plan.offered_per_s} {plan.warmup_s} 1", plan.warmup_s)
    late = probe["median_send_lag_ms"] > 0.5 or probe["achieved_per_s"] < 0.95 * plan.offered_per_s
    if not late:
        return 1, "1 thread"
    return 4, (
        f"4 threads, as 1 thread could not keep the schedule (reached {probe['achieved_per_s']:.0f}/s, "
        f"median send lag {probe['median_send_lag_ms']:.1f} ms)"
    )


def ack_latency(world: World, daemon: Daemon, project: Path, plan: IngestPlan) -> list[Figure]:
    """p50/p99 publish-to-ack at a fixed offered rate, with latency counted from the schedule."""
    publishers = Publishers(world, project, 1)
    rate, duration_s = plan.offered_per_s, plan.latency_duration_s
    try:
        threads, how = _threads_needed(publishers, plan)
        runs, busy = _runs(publishers, daemon, f"paced {rate} {duration_s} {threads}", duration_s, plan.runs)
    finally:
        publishers.close()
    answers = [run[0] for run in runs]
    how = f"offered {rate:g}/s for {duration_s:g} s/run, {how}; latency from the scheduled send time; {busy}"
    lag_ms = max(a["max_send_lag_ms"] for a in answers)
    return [
        Figure(
            "ack_latency_p50_ms",
            SECTION,
            "ms",
            [percentile(a["latencies_ms"], 0.50) for a in answers],
            Target("<=", 2),
            how,
        ),
        Figure(
            "ack_latency_p99_ms",
            SECTION,
            "ms",
            [percentile(a["latencies_ms"], 0.99) for a in answers],
            Target("<=", 10),
            how,
        ),
        Figure(
            "ack_latency_achieved_per_s",
            SECTION,
            "events/s",
            [a["achieved_per_s"] for a in answers],
            note=f"rate actually sent and acked at {rate:g}/s offered; worst send lag {lag_ms:.1f} ms",
        ),
    ]


def measure(world: World, daemon: Daemon, plan: IngestPlan) -> list[Figure]:
    project = world.project("ingest")
    figures = [concurrent_rate(world, daemon, project, n, plan) for n in plan.concurrency]
    figures.append(batch_rate(world, daemon, project, plan))
    figures.extend(ack_latency(world, daemon, project, plan))
    return figures
