"""elsabro's benchmark suite: every figure of the performance issue, side by side, in one run.

    .venv/bin/python bench/run.py [--quick] [--out FILE]

Writes a JSON file of results (default bench/results/latest.json) and prints a Markdown
table. Each figure is the median of several runs after a warm-up, with min and max;
targets are judged on the median. --quick runs a reduced version of everything (under
a minute on a 2-core machine); the full run takes a few minutes.

Everything runs in throwaway worlds under /tmp (their own HOME, socket and projects)
against real daemon subprocesses, and is removed at the end. No network but the Unix
socket and, for webhooks, a local receiver on 127.0.0.1. Progress goes to stderr, the
table to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bus_api
import fanout
import footprint
import hook_cost
import ingest_rate
import report
import scan_replay
from common import REPO, Daemon, Figure, World
from elsabro.daemon.process import package_version

DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"
SECTIONS = ("hook", "ingest", "fanout", "bus", "scan", "footprint")


@dataclass(frozen=True)
class Profile:
    """How much of everything to run."""

    hook_samples: int
    hook_warmup: int
    ingest: ingest_rate.IngestPlan
    fanout: fanout.FanoutPlan
    bus: bus_api.BusPlan
    scan_events: int
    scan_runs: int
    query_runs: int
    startup_runs: int
    cli_runs: int


QUICK = Profile(
    hook_samples=10,
    hook_warmup=2,
    ingest=ingest_rate.IngestPlan(duration_s=1.0, warmup_s=0.3, runs=3, latency_duration_s=1.0),
    fanout=fanout.FanoutPlan(
        duration_s=0.5, warmup_s=0.2, runs=3, batch_deliveries=300, latency_duration_s=0.5
    ),
    bus=bus_api.BusPlan(publishes=200, warmup=20, runs=3, delivery_events=1_000),
    scan_events=100_000,
    scan_runs=3,
    query_runs=5,
    startup_runs=3,
    cli_runs=5,
)
FULL = Profile(
    hook_samples=40,
    hook_warmup=3,
    ingest=ingest_rate.IngestPlan(duration_s=3.0, warmup_s=1.0, runs=5, latency_duration_s=5.0),
    fanout=fanout.FanoutPlan(
        duration_s=2.0, warmup_s=0.5, runs=5, batch_deliveries=1000, latency_duration_s=2.0
    ),
    bus=bus_api.BusPlan(publishes=1000, warmup=100, runs=5, delivery_events=10_000),
    scan_events=1_000_000,
    scan_runs=5,
    query_runs=9,
    startup_runs=7,
    cli_runs=15,
)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        return "unknown"


def measure_all(profile: Profile) -> tuple[list[Figure], list[str]]:
    """Every section against one long-lived daemon (start-up and fan-out runs use their own)."""
    figures: list[Figure] = []
    notes: list[str] = []
    progress("daemon start-up")
    figures += footprint.daemon_startup(profile.startup_runs)
    world = World()
    daemon = Daemon(world)
    try:
        daemon.start()
        progress("hook cost per event")
        hook_figures, hook_notes = hook_cost.measure(world, profile.hook_samples, profile.hook_warmup)
        figures += hook_figures
        notes += hook_notes
        progress("ingest (1, 4, 16 processes; batches; latency at a fixed rate)")
        figures += ingest_rate.measure(world, daemon, profile.ingest)
        figures.append(
            footprint.daemon_memory(
                daemon, "daemon_rss_after_ingest_mib", "VmRSS after the hook and ingest runs"
            )
        )
        progress("CLI start-up")
        figures += footprint.cli_startup(world, profile.cli_runs)
        progress("bus: the Python EventBus, client and embedded (publish latency, delivery rate)")
        figures += bus_api.measure(world, daemon, profile.bus)
        progress(f"scan: writing {profile.scan_events:,} events, then scanning and querying")
        scan_figures, scan_notes = scan_replay.measure(
            world, profile.scan_events, profile.scan_runs, profile.query_runs
        )
        figures += scan_figures
        notes += scan_notes
        figures.append(
            footprint.daemon_memory(
                daemon, "daemon_rss_peak_mib", "VmHWM (peak RSS) at the end of the run", key="VmHWM"
            )
        )
    finally:
        daemon.stop()
        world.remove()
    progress("fan-out: append and exec subscriptions; webhooks to 1, 10 and 100 endpoints")
    figures += fanout.measure(profile.fanout)
    figures.sort(key=lambda figure: SECTIONS.index(figure.section))  # stable: keeps order within one
    return figures, notes


def meta(quick: bool, profile: Profile, elapsed_s: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    return {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "elapsed_s": round(elapsed_s, 1),
        "elsabro_version": package_version(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # The machine is shared: the load around the run says how much to trust it.
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "profile": asdict(profile),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run of everything (under a minute)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    started = time.perf_counter()
    figures, notes = measure_all(profile)
    elapsed_s = time.perf_counter() - started
    notes.append(f"whole run: {elapsed_s:.0f} s ({'--quick' if args.quick else 'full'})")
    report.write_json(
        args.out,
        figures,
        scan_replay.NOT_YET_MEASURABLE,
        notes,
        meta(args.quick, profile, elapsed_s, load_before),
    )
    print(report.markdown(figures, scan_replay.NOT_YET_MEASURABLE, notes), end="")
    progress(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
