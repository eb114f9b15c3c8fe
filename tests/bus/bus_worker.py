"""A subscriber in its own process, for the client-mode tests of the EventBus.

    python bus_worker.py PROJECT OUT [--queue Q] [--name N] [--durable]

It subscribes to `job.run` through the daemon (ELSABRO_SOCKET), appends each payload it
handles to OUT as one JSON line, touches OUT.ready once subscribed, and exits when
OUT.stop appears, or after 120 s at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from elsabro import EventBus, StoredEvent
from elsabro.bus.subscriber import SubscribeOptions

LIFETIME_S = 120.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project")
    parser.add_argument("out", type=Path)
    parser.add_argument("--queue")
    parser.add_argument("--name")
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    out = args.out.open("a")

    async def handle(event: StoredEvent) -> None:
        out.write(json.dumps(event.payload) + "\n")
        out.flush()

    options: SubscribeOptions = {"durable": args.durable}
    if args.queue:
        options["queue"] = args.queue
    if args.name:
        options["name"] = args.name
    async with EventBus(args.project, start_daemon=False) as bus:
        await bus.subscribe("job.run", handle, **options)
        Path(f"{args.out}.ready").touch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIFETIME_S
        while not Path(f"{args.out}.stop").exists() and loop.time() < deadline:
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main())
