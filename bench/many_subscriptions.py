"""How long one batch of events keeps a project with many subscriptions busy.

An in-process project (the daemon's own parts: log, dispatcher, consumers) with N
subscriptions on exact topics that the batch does not carry, plus one `#` subscription
that appends. One batch of 200 events is appended; the figures are the time until every
consumer's cursor has passed the batch, and the longest time the event loop went without
running a 1 ms ticker (how long the daemon could not answer anyone).

  .venv/bin/python bench/many_subscriptions.py [N] [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from elsabro.config.schema import ProjectConfig
from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.projects.project import Project

BATCH = 200


async def run(count: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="elsabro-bench-") as root:
        settings = Settings.from_env({"HOME": root, "ELSABRO_SOCKET": f"{root}/d.sock"})
        project = Project(Path(root), settings, None)
        project.open()
        project.log.start()
        subs = [
            {"name": f"s{i}", "topic": f"never.{i}", "handler": {"type": "append", "path": "x.jsonl"}}
            for i in range(count)
        ]
        subs.append({"name": "all", "pattern": "#", "handler": {"type": "append", "path": "all.jsonl"}})
        project.apply(ProjectConfig.model_validate({"subscriptions": subs}))
        await asyncio.sleep(0.5)  # every consumer waiting on the log

        longest_gap_s = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal longest_gap_s
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                longest_gap_s = max(longest_gap_s, now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        longest_gap_s = 0.0
        started = time.perf_counter()
        events = [PublishRequest(topic="work.done", payload={"n": n}).to_event() for n in range(BATCH)]
        await project.log.append(events)
        head = project.log.committed_sequence
        consumers = list(project.dispatcher.consumers.values())
        while any(c.cursor < head for c in consumers):
            await asyncio.sleep(0.01)
        elapsed_s = time.perf_counter() - started
        stop = True
        await ticking
        await project.close()
        return elapsed_s, longest_gap_s


def main() -> None:
    count = int(next((a for a in sys.argv[1:] if a.isdigit()), "10000"))
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.enable()
    elapsed_s, gap_s = asyncio.run(run(count))
    if "--profile" in sys.argv:
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    print(
        f"{count} subscriptions, one batch of {BATCH}: all cursors past it in {elapsed_s:.2f} s; "
        f"longest event-loop stall {gap_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
