"""Footprint: daemon memory and start-up, and the CLI's start-up as a user feels it."""

from __future__ import annotations

import sys

from common import Daemon, Figure, World, timed_run

SECTION = "footprint"


def daemon_startup(runs: int, warmup: int = 1) -> list[Figure]:
    """Start a fresh daemon `runs` times (after `warmup`): spawn-to-answer time and idle RSS.

    Each start is in its own throwaway world, stopped before the next one starts, so no
    run inherits another's open projects or warm state beyond the OS page cache.
    """
    startup_ms: list[float] = []
    rss_mib: list[float] = []
    for index in range(warmup + runs):
        world = World("start")
        daemon = Daemon(world)
        try:
            daemon.start()
            rss = daemon.memory_mib("VmRSS")
        finally:
            daemon.stop()
            world.remove()
        if index >= warmup:
            startup_ms.append(daemon.startup_ms)
            rss_mib.append(rss)
    return [
        Figure(
            "daemon_startup_ms",
            SECTION,
            "ms",
            startup_ms,
            note="spawn of `python -m elsabro daemon run` to its first answer on the socket",
        ),
        Figure(
            "daemon_rss_idle_mib", SECTION, "MiB", rss_mib, note="VmRSS right after start, no project open"
        ),
    ]


def daemon_memory(daemon: Daemon, name: str, note: str, key: str = "VmRSS") -> Figure:
    """One reading of the running daemon's memory (a single sample: it is a state, not a run)."""
    return Figure(name, SECTION, "MiB", [daemon.memory_mib(key)], note=note)


def cli_startup(world: World, runs: int, warmup: int = 2) -> list[Figure]:
    """Wall time of the CLI's two commonest calls against a running daemon.

    A small project of its own: `history --limit 1` reads from the daemon's memory
    here; on a large log it reads the files (see last_event_query_ms).
    """
    project = world.project("cli")
    commands = {
        "cli_publish_ms": ["publish", "x.y"],
        "cli_history_ms": ["history", "--limit", "1"],
    }
    figures = []
    for name, args in commands.items():
        argv = [sys.executable, "-m", "elsabro", *args]
        samples = [timed_run(argv, b"", world.env, cwd=project) for _ in range(warmup + runs)][warmup:]
        figures.append(
            Figure(name, SECTION, "ms", samples, note=f"python -m elsabro {' '.join(args)} (daemon up)")
        )
    return figures
