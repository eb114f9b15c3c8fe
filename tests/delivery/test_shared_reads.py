"""Many subscriptions share one read of each batch, and each still gets exactly its events.

Every consumer used to read and parse every record itself and test it against its
selector: 10,000 subscriptions and one 200-event batch meant two million parses, with the
event loop (and so the daemon) unable to answer anyone meanwhile. An in-process project:
the daemon's own parts, with real `append` handlers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from elsabro.config.schema import ProjectConfig
from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.projects.project import Project
from support import run, until

SUBSCRIPTIONS = 2000
BATCH = 200


def test_one_batch_is_read_once_for_thousands_of_subscriptions(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings.from_env({"HOME": str(tmp_path), "ELSABRO_SOCKET": str(tmp_path / "d.sock")})
        project = Project(tmp_path, settings, None)
        project.open()
        project.log.start()
        subs: list[dict[str, Any]] = [
            {"name": f"s{i}", "topic": f"work.{i}", "handler": {"type": "append", "path": f"out/{i}.jsonl"}}
            for i in range(SUBSCRIPTIONS)
        ]
        subs.append({"name": "all", "pattern": "work.#", "handler": {"type": "append", "path": "all.jsonl"}})
        project.apply(ProjectConfig.model_validate({"subscriptions": subs}))
        await asyncio.sleep(0)  # the consumers start and wait on the log

        reads = 0
        read = project.log.read

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return read(*args, **kwargs)

        project.log.read = counting  # type: ignore[method-assign]  # counts, then reads for real
        topics = [f"work.{n % 3}" for n in range(BATCH)]  # only s0, s1, s2 and `all` want any
        stored = await project.log.append(
            [PublishRequest(topic=t, payload={"n": n}).to_event() for n, t in enumerate(topics)]
        )
        head = stored[-1]["sequence"]
        consumers = list(project.dispatcher.consumers.values())
        await until(lambda: all(c.cursor >= head for c in consumers), "every cursor past the batch", 60)
        await project.close()

        assert reads <= 4, reads  # one read per batch (256 records), not one per subscription
        everything = [
            json.loads(line)["payload"]["n"] for line in (tmp_path / "all.jsonl").read_text().splitlines()
        ]
        assert everything == list(range(BATCH))
        for i in range(3):
            got = [
                json.loads(line)["payload"]["n"]
                for line in (tmp_path / "out" / f"{i}.jsonl").read_text().splitlines()
            ]
            assert got == [n for n in range(BATCH) if n % 3 == i]
        assert not (tmp_path / "out" / "3.jsonl").exists()

    run(scenario())
