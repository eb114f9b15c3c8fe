"""The log read for a project's consumers: each position read and parsed once, and shared.

Every consumer reads the log in order from its cursor (dispatch.py); those keeping up
with the log all ask for the same next records, so the read, the JSON parse and the
grouping by topic happen once per position, not once per consumer.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from itertools import islice
from typing import Any

from elsabro.core.topics import matches
from elsabro.delivery.context import ProjectContext

READ_BATCH = 256


class Batch:
    """Records read once from the log, parsed once, and shared by every consumer that reads
    from the same position (consumers keeping up with the log all do), with the records
    grouped by topic: a consumer finds the ones its selectors can want without looking at
    each record. With 10,000 subscriptions, each parsing and testing every record of a
    200-event batch kept the event loop busy for minutes."""

    def __init__(self, records: list[tuple[int, dict[str, Any]]]) -> None:
        self.records = records
        self.last = records[-1][0]
        self.by_topic: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for item in records:
            self.by_topic.setdefault(item[1]["topic"], []).append(item)

    def candidates(self, selectors: set[str]) -> list[tuple[int, dict[str, Any]]]:
        """The records whose topic one of `selectors` matches, in log order."""
        if "#" in selectors:
            return self.records
        topics = [t for t in self.by_topic if any(matches(s, t) for s in selectors)]
        if len(topics) <= 1:
            return self.by_topic[topics[0]] if topics else []
        return sorted((item for t in topics for item in self.by_topic[t]), key=lambda item: item[0])


class Reads:
    """The log read for a project's consumers: one read and parse per position, shared."""

    KEEP = 16  # recent batches kept: consumers a little behind one another still share

    def __init__(self, project: ProjectContext) -> None:
        self.project = project
        self._batches: OrderedDict[int, asyncio.Future[Batch]] = OrderedDict()

    async def after(self, position: int) -> Batch:
        """The next records after `position` (waiting for one to be committed)."""
        log_ = self.project.log
        while log_.committed_sequence <= position:
            await log_.wait_beyond(position)
        batch = self._batches.get(position)
        if batch is None or (batch.done() and batch.exception() is not None):
            batch = asyncio.ensure_future(self._read(position, log_.committed_sequence))
            self._batches[position] = batch
            while len(self._batches) > self.KEEP:
                self._batches.popitem(last=False)
        return await asyncio.shield(batch)  # one reader cancelled does not cancel the others' read

    async def _read(self, after: int, upto: int) -> Batch:
        def read() -> Batch:
            lines = islice(self.project.log.read(after, upto), READ_BATCH)
            return Batch([(sequence, json.loads(line)) for sequence, line in lines])

        return await asyncio.to_thread(read)
