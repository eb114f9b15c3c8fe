"""One project's append-only log: the single writer, group commit and live readers.

Publishers hand events to `append()`, which queues them and waits. One writer task per
project takes everything queued (up to `commit_max_events`), assigns gapless sequences,
writes the lines with one `write` and one `fdatasync`, and only then resolves every
waiting publisher: many concurrent publishes share one fsync, and nothing is
acknowledged before it is on disk. The queue is bounded: when it is full, `append()`
raises Busy at once instead of letting latency grow without limit.

A failed write or fsync stops the writer for good (retrying fsync can falsely succeed):
every later append raises WriteFailed until the daemon restarts and recovers the log.
A full disk is the one write error that does not: the store cuts the partial write off
and refuses that group with DiskFull, and the next group tries again. Likewise a group
finding no file descriptor left (OutOfDescriptors), and one finding that the project's
directory was removed or replaced since it was opened (ProjectMoved, checked by `guard`
before anything is written): nothing of it reached a file no one will read again, and
`moved` tells the owner to close this log and open the new directory.

Where the lines go is the store's business (base.py): segment files by default.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from elsabro.core import redact
from elsabro.core.errors import (
    BadRequest,
    Busy,
    DiskFull,
    LogCorrupted,
    OutOfDescriptors,
    ProjectMoved,
    StoreError,
    WriteFailed,
)
from elsabro.core.model import Event, now_iso
from elsabro.core.settings import Settings
from elsabro.store.base import GENESIS_HASH, Cut, Removal, Store, Tail, line_hash
from elsabro.store.files import FileStore
from elsabro.store.query import Query

log = logging.getLogger("elsabro.log")


@dataclass
class _Pending:
    events: list[Event]
    extra: list[dict[str, Any]] | None  # per-event fields merged into metadata (spool ids)
    done: asyncio.Future[list[dict[str, Any]]]


# The stored records of one append and their lines.
_Stored = list[tuple[dict[str, Any], bytes]]


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")


class ProjectLog:
    """The log of one project, written only by this object's writer task."""

    def __init__(
        self, project_dir: Path, settings: Settings, io: Executor | None = None, store: Store | None = None
    ) -> None:
        self.project_dir = project_dir
        self.events_dir = project_dir / ".elsabro" / "events"
        self.settings = settings
        self.store: Store = store if store is not None else FileStore(self.events_dir, settings)
        self._io = io
        self._pending: deque[_Pending] = deque()
        self._pending_events = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._failure: StoreError | None = None
        self._disk_full_logged = False
        self.committed_sequence = 0
        self._hash = GENESIS_HASH
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=settings.recent_records)
        self.spool_ids: set[str] = set()
        self.rules = redact.Rules()  # the project's redaction rules, set from its config
        # Notified after every commit; live readers wait on it.
        self.changed = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        # Run before each group is written (in the I/O thread): raises ProjectMoved when the
        # project's directory is no longer the one opened. Set by the project that owns the log.
        self.guard: Callable[[], None] | None = None
        self.moved = False  # a write found the directory removed or replaced: reopen it

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> Tail:
        """Recover the log and get ready to write (blocking: run it in a thread)."""
        try:
            tail = self.store.open(self.settings.recent_records)
        except LogCorrupted as exc:
            self._failure = exc
            log.error("%s", exc)
            return Tail()
        self.committed_sequence, self._hash = tail.sequence, tail.hash
        self.recent.extend(tail.recent)
        self.spool_ids = tail.spool_ids
        return tail

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="writer")

    async def close(self) -> None:
        """Stop taking appends, write and fsync everything already accepted, close."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        async with self.changed:
            self.changed.notify_all()  # live readers end: nothing more comes to this log
        self.store.close()

    @property
    def failure(self) -> StoreError | None:
        return self._failure

    # -- appending -----------------------------------------------------------------------

    async def append(
        self, events: list[Event], extra: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Append events as one atomic batch; return their stored records once fsynced."""
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))
        if self._closing:
            if self.moved:  # closed because its directory was replaced: the caller writes to the new one
                raise ProjectMoved(
                    f"the directory {self.project_dir} was removed or replaced; it is opened again"
                )
            raise Busy("the daemon is shutting down; retry")
        if self._pending_events + len(events) > self.settings.queue_max_events and self._pending_events:
            raise Busy(f"write queue full ({self._pending_events} events waiting); retry shortly")
        item = _Pending(events, extra, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._pending_events += len(events)
        self._wake.set()
        return await item.done

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                group = self._take_group()
                try:
                    results, sequence, chain = await loop.run_in_executor(self._io, self._write_group, group)
                except (DiskFull, OutOfDescriptors, ProjectMoved) as exc:
                    self.moved = self.moved or isinstance(exc, ProjectMoved)
                    self._refuse(group, exc)
                    continue
                except OSError as exc:
                    self._fail(group, exc)
                    return
                self._disk_full_logged = False
                # Durable now: move the tail forward and answer the publishers.
                self.committed_sequence, self._hash = sequence, chain
                for item, stored in zip(group, results, strict=True):
                    if isinstance(stored, BadRequest):
                        if not item.done.done():
                            item.done.set_exception(stored)
                        continue
                    self.recent.extend((record["sequence"], line) for record, line in stored)
                    if not item.done.done():
                        item.done.set_result([record for record, _ in stored])
                async with self.changed:
                    self.changed.notify_all()
            if self._closing:
                return

    def _take_group(self) -> list[_Pending]:
        group: list[_Pending] = []
        count = 0
        while self._pending and (
            not group or count + len(self._pending[0].events) <= self.settings.commit_max_events
        ):
            item = self._pending.popleft()
            group.append(item)
            count += len(item.events)
        self._pending_events -= count
        return group

    def _refuse(self, group: list[_Pending], exc: StoreError) -> None:
        """Only this group fails: nothing of it reached the disk, and the next one may fit."""
        if not self._disk_full_logged:  # once per episode, not once per publish
            (log.warning if isinstance(exc, ProjectMoved) else log.error)("%s", exc)
            self._disk_full_logged = True
        for item in group:
            if not item.done.done():
                item.done.set_exception(type(exc)(str(exc)))

    def _fail(self, group: list[_Pending], exc: OSError) -> None:
        self._failure = WriteFailed(
            f"writing {self.events_dir} failed: {exc.strerror or exc}; restart the daemon"
        )
        log.error("%s", self._failure)
        for item in [*group, *self._pending]:
            if not item.done.done():
                item.done.set_exception(WriteFailed(str(self._failure)))
        self._pending.clear()
        self._pending_events = 0

    # -- the blocking part, run in a thread ------------------------------------------------

    def _write_group(self, group: list[_Pending]) -> tuple[list[_Stored | BadRequest], int, str]:
        sequence, chain = self.committed_sequence, self._hash
        stored_at = now_iso()
        results: list[_Stored | BadRequest] = []
        chunks: list[bytes] = []
        for item in group:
            try:
                stored = self._encode(item, sequence, chain, stored_at)
            except (ValueError, TypeError, RecursionError) as exc:  # cannot be written: refuse it alone
                results.append(BadRequest(f"the event cannot be stored as JSON: {exc}"))
                continue
            sequence, chain = stored[-1][0]["sequence"], line_hash(stored[-1][1])
            chunks.extend(line for _, line in stored)
            results.append(stored)
        if chunks:
            if self.guard is not None:
                self.guard()
            self.store.write(chunks, self.committed_sequence + 1)
        # Durable now; the writer loop moves the tail forward and answers the publishers.
        return results, sequence, chain

    def _encode(self, item: _Pending, sequence: int, chain: str, stored_at: str) -> _Stored:
        """The records and lines of one append, chained on from (sequence, chain)."""
        batch_last = sequence + len(item.events) if len(item.events) > 1 else None
        stored = []
        for index, event in enumerate(item.events):
            sequence += 1
            record = redact.redact_event(event.to_wire(), self.rules)  # nothing secret reaches the disk
            if item.extra is not None and item.extra[index]:
                record["metadata"] = {**(record["metadata"] or {}), **item.extra[index]}
            record["sequence"] = sequence
            record["storedAt"] = stored_at
            record["prevHash"] = chain
            if batch_last is not None:
                record["batchLast"] = batch_last
            line = _dumps(record)
            chain = line_hash(line)
            stored.append((record, line))
        return stored

    async def retire(self, cut: Cut, archive_dir: Path | None) -> Removal | None:
        """Remove the oldest records the cut allows, from the store and from memory alike."""
        removal = await asyncio.get_running_loop().run_in_executor(
            self._io, self.store.retire, cut, archive_dir
        )
        while removal is not None and self.recent and self.recent[0][0] <= removal.last_sequence:
            self.recent.popleft()  # memory must not serve what the store no longer has
        return removal

    async def wait_beyond(self, sequence: int) -> None:
        """Return once a record after `sequence` is committed, or the log is closing."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.committed_sequence > sequence or self._closing)

    @property
    def closing(self) -> bool:
        return self._closing

    # -- reading -------------------------------------------------------------------------

    def read(self, after_sequence: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(sequence, line) of committed records in (after_sequence, upto], from memory when recent.

        Blocking when it falls back to the files: run it in a thread.
        """
        upto = self._upto(upto)
        recent = self._from_memory(after_sequence, upto)
        yield from recent if recent is not None else self.store.read(after_sequence, upto)

    def read_backwards(self, after_sequence: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Committed records in (after_sequence, upto], newest first (blocking: run it in a thread)."""
        yield from self.store.read_backwards(after_sequence, self._upto(upto))

    def candidates(
        self, query: Query, upto: int | None = None, newest_first: bool = False
    ) -> Iterator[tuple[int, bytes]]:
        """Committed records the query may match (the store's index rules out the rest; blocking)."""
        upto = self._upto(upto)
        recent = self._from_memory(query.after_sequence, upto)  # a live reader near the head
        if recent is None:
            yield from self.store.candidates(query, upto, newest_first)
        else:
            yield from reversed(recent) if newest_first else recent

    def _upto(self, upto: int | None) -> int:
        return self.committed_sequence if upto is None else min(upto, self.committed_sequence)

    def _from_memory(self, after_sequence: int, upto: int) -> list[tuple[int, bytes]] | None:
        """The records in (after_sequence, upto] if memory holds them all, else None."""
        recent = list(self.recent)
        if not recent or recent[0][0] > after_sequence + 1:
            return None
        return [(seq, line) for seq, line in recent if after_sequence < seq <= upto]

    def select(self, query: Query, upto: int | None = None) -> list[bytes]:
        """The lines a query selects, oldest first (blocking)."""
        if query.limit is not None and query.caused_by is None:  # the newest: read from the end
            found = query.select_last(self.candidates(query, upto, newest_first=True))
            return [line for line, _ in found]
        return list(self.matching(query, upto))

    def matching(self, query: Query, upto: int | None = None) -> Iterator[bytes]:
        """The matching lines in log order, streamed (blocking)."""
        if query.caused_by is not None:  # the chain starts at its first event: read from there
            first = Query(event_id=query.caused_by)
            root = next(first.select(self.candidates(first, upto)), None)
            if root is None:
                return
            query = replace(query, after_sequence=max(query.after_sequence, root[1]["sequence"] - 1))
        yield from (line for line, _ in query.select(self.candidates(query, upto)))
