"""Subscriptions at work: ordered delivery from the log, cursors, queue groups.

Every subscription, or every queue group (subscriptions sharing `options.queue`), is one
*consumer* that reads the project's log in order from its cursor, as a pull consumer
does: nothing is queued in memory per subscription, a slow handler delays only its own
consumer, and events that arrived through the spool are read like any other. What a
consumer hands each event to is a member (members.py: matching, retries, dead letters).

- One event in flight per member: a plain subscription delivers in log order. A queue
  group hands each event to exactly one free member, round-robin, preferring members
  whose last delivery succeeded; order then holds per member only.
- The cursor is the highest sequence up to which every event was handled. A durable
  consumer checkpoints it to `.elsabro/cursors.json` every second and at shutdown, so
  after a crash it redelivers at most the events handled in the last second; others
  start at the head of the log and see only new events.
- The config's subscriptions and endpoints are applied as a whole (`apply`). Subscribers
  of the Python API join and leave one by one (`join`, `leave`); one that leaves with an
  event in flight hands it back, and it goes to another member of its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from elsabro.config.schema import ProjectConfig
from elsabro.core import durable
from elsabro.core.errors import BadRequest, NotFound
from elsabro.delivery.context import ProjectContext
from elsabro.delivery.endpoints import endpoint_groups
from elsabro.delivery.members import Member, SubscriptionMember
from elsabro.delivery.reads import Reads

log = logging.getLogger("elsabro.dispatch")

CURSORS = Path(".elsabro") / "cursors.json"
CHECKPOINT_S = 1.0
# Cursor keys of the Python API's subscribers; `apply` leaves them alone.
API_PREFIX = "api:"


class Consumer:
    """Reads the log from a cursor and hands matching events to its members."""

    def __init__(
        self,
        name: str,
        members: list[Member],
        project: ProjectContext,
        cursor: int,
        reads: Reads | None = None,
    ) -> None:
        self.name = name
        self.members = members
        self.project = project
        self.reads = reads or Reads(project)
        self.durable = any(m.durable for m in members)
        self.cursor = cursor
        self._read_position = cursor
        self._in_flight: set[int] = set()
        self._freed = asyncio.Event()
        self._next_member = 0
        # Each member's delivery task and the record it is delivering (handed back if it leaves).
        self._in_hand: dict[Member, tuple[asyncio.Task[None], dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"consumer {self.name}")

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add(self, member: Member) -> None:
        self.members.append(member)
        self._freed.set()

    def remove(self, member: Member) -> asyncio.Task[None] | None:
        """Take a member out; an event it had in flight goes to another member (when one joins).
        Returns its cancelled delivery, if it had one."""
        self.members.remove(member)
        in_hand = self._in_hand.pop(member, None)
        if in_hand is None or member.in_flight is None:
            return None
        delivery, record = in_hand
        delivery.cancel()
        self._spawn(self._dispatch(member.in_flight, record))
        return delivery

    async def _run(self) -> None:
        while True:
            batch = await self.reads.after(self._read_position)
            for sequence, record in batch.candidates({m.selector for m in self.members}):
                self._read_position = sequence
                if not any(m.receives(record) for m in self.members):
                    self._handled(sequence)
                    continue
                self._in_flight.add(sequence)
                await self._dispatch(sequence, record)
            # The records no selector could want are handled by being passed.
            self._read_position = batch.last
            self.cursor = min(self._in_flight) - 1 if self._in_flight else self._read_position

    async def _dispatch(self, sequence: int, record: dict[str, Any]) -> None:
        member = await self._free_member(record)
        member.in_flight, member.in_flight_since = sequence, time.monotonic()
        self._in_hand[member] = (self._spawn(self._deliver(member, sequence, record)), record)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _free_member(self, record: dict[str, Any]) -> Member:
        """A free member that wants the record; members may join and leave while we wait."""
        while True:
            free = [m for m in self.members if m.in_flight is None and m.receives(record)]
            healthy = [m for m in free if m.failures == 0] or free
            if healthy:
                self._next_member += 1
                return healthy[self._next_member % len(healthy)]
            self._freed.clear()
            await self._freed.wait()

    def _handled(self, sequence: int) -> None:
        self._in_flight.discard(sequence)
        self.cursor = min(self._in_flight) - 1 if self._in_flight else self._read_position

    async def _deliver(self, member: Member, sequence: int, record: dict[str, Any]) -> None:
        try:
            await member.deliver(self.project, record)
        except Exception as exc:  # a bug or a failed store write, not a handler's failure
            # Fail visibly: the event stays in flight, so the cursor does not pass an event
            # that was neither delivered nor dead-lettered, and the subscription shows stalled.
            log.exception("%s: delivering %s failed unexpectedly", member.name, record.get("id"))
            member.failures += 1
            member.last_error = f"internal error: {exc}"
            return
        member.in_flight = None
        self._in_hand.pop(member, None)
        self._handled(sequence)
        self._freed.set()


class Dispatcher:
    """A project's consumers: the config's, rebuilt when it changes, and the API's subscribers."""

    def __init__(self, project: ProjectContext) -> None:
        self.project = project
        self.consumers: dict[str, Consumer] = {}
        self._checkpointer: asyncio.Task[None] | None = None
        self._saved: dict[str, int] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._forgotten: set[str] = set()  # cursor keys dropped with their subscription or endpoint
        self.reads = Reads(project)

    def apply(self, config: ProjectConfig, forget_removed: bool = True) -> None:
        """Run exactly the subscriptions and endpoints of `config`; unchanged consumers keep running.

        `forget_removed=False` stops what the config no longer runs but keeps its cursor: a
        config withheld until it is trusted again pauses its durable subscriptions, which then
        resume where they stopped."""
        groups = self._groups(config)
        named = _named_keys(config)
        gone = []
        for key in [k for k in self.consumers if not k.startswith(API_PREFIX)]:
            if [m.spec for m in self.consumers[key].members] != [m.spec for m in groups.get(key, [])]:
                self._spawn_stop(self.consumers.pop(key))
                gone += [] if key in named or not forget_removed else [key]
        if gone:
            # Removed from the config: its place in the log goes too, so one re-added under the
            # same name or id starts at the log's end like any new one, not where the old one was.
            self._forgotten.update(gone)
            _drop_cursors(self.project.path, gone)
        saved = {k: v for k, v in _read_cursors(self.project.path).items() if k not in self._forgotten}
        fresh = [
            self._start(key, members, saved) for key, members in groups.items() if key not in self.consumers
        ]
        self._save_fresh([key for key in fresh if key])
        if self._checkpointer is None:
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    def _start(
        self, key: str, members: list[Member], saved: dict[str, int], after: int | None = None
    ) -> str | None:
        """Start a consumer where it left off (durable, from `saved`), after `after`, or at the
        head. Returns the key if it is durable and has no saved cursor yet."""
        head = self.project.log.committed_sequence
        durable = any(m.durable for m in members)
        cursor = saved.get(key, head) if durable else head if after is None else after
        consumer = Consumer(key, members, self.project, max(0, min(cursor, head)), self.reads)
        self._forgotten.discard(key)
        self.consumers[key] = consumer
        consumer.start()
        return key if durable and key not in saved else None

    def _save_fresh(self, keys: list[str]) -> None:
        # Saved at once: a crash before the first checkpoint must not skip what came meanwhile.
        if keys:
            _merge_cursors(self.project.path, {key: self.consumers[key].cursor for key in keys})

    def _groups(self, config: ProjectConfig) -> dict[str, list[Member]]:
        """Consumers by cursor key: a subscription, a queue group, or a webhook endpoint."""
        groups: dict[str, list[Member]] = {}
        for sub in config.subscriptions:
            key = f"queue:{sub.options.queue}" if sub.options.queue else f"sub:{sub.name}"
            groups.setdefault(key, []).append(SubscriptionMember(sub))
        groups.update(endpoint_groups(config, self.project.clients))
        return groups

    # -- the Python API's subscribers, one at a time ----------------------------------------

    def join(self, member: Member, after: int | None = None) -> Consumer:
        """Add an API subscriber: to its queue group's consumer, or to a consumer of its own.

        A durable one resumes from its saved cursor; otherwise it starts after `after`
        (where a reconnecting subscriber left off) or at the head of the log.
        """
        if any(m.name == member.name for c in self.consumers.values() for m in c.members):
            raise BadRequest(f"a subscriber named {member.name!r} is connected already")
        group = member.options.queue
        key = f"{API_PREFIX}queue:{group}" if group else f"{API_PREFIX}{member.name}"
        consumer = self.consumers.get(key)
        if consumer is not None:
            consumer.add(member)
            consumer.durable = consumer.durable or member.durable
        else:
            fresh = self._start(key, [member], _read_cursors(self.project.path), after)
            self._save_fresh([fresh] if fresh else [])
            consumer = self.consumers[key]
        if self._checkpointer is None:
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop())
        return consumer

    def leave(self, member: Member) -> asyncio.Future[Any]:
        """Remove an API subscriber; its group's consumer stops (checkpointed) once empty.
        The result is done once nothing runs for the member any more."""
        pending: list[asyncio.Task[None]] = []
        for key, consumer in list(self.consumers.items()):
            if member in consumer.members:
                delivery = consumer.remove(member)
                pending += [delivery] if delivery is not None else []
                if not consumer.members:
                    del self.consumers[key]
                    pending.append(self._spawn_stop(consumer))
                break
        return asyncio.gather(*pending, return_exceptions=True)

    def _spawn_stop(self, consumer: Consumer) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._stop(consumer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    async def _stop(self, consumer: Consumer) -> None:
        await consumer.stop()
        # It resumes from here: a subscriber that left, or a subscription paused (its config
        # withheld until trusted again, or changed). A removed one's cursor is gone for good.
        if consumer.durable and consumer.name not in self._forgotten:
            await asyncio.to_thread(_merge_cursors, self.project.path, {consumer.name: consumer.cursor})

    async def stop(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        await asyncio.gather(*(c.stop() for c in self.consumers.values()), *self._stopping)
        await asyncio.to_thread(self._checkpoint)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        cursors = {key: c.cursor for key, c in self.consumers.items() if c.durable}
        if cursors and cursors != self._saved:
            _merge_cursors(self.project.path, cursors)
            self._saved = cursors

    def oldest_needed(self) -> int:
        """The oldest sequence a durable consumer may still need: the one after its checkpointed
        cursor (after a crash it resumes from there, not from its cursor in memory)."""
        saved = _read_cursors(self.project.path)
        needed = [
            min(consumer.cursor, saved.get(key, consumer.cursor)) + 1
            for key, consumer in self.consumers.items()
            if consumer.durable
        ]
        return min(needed, default=self.project.log.committed_sequence + 1)

    def member(self, name: str) -> Member:
        for consumer in self.consumers.values():
            for member in consumer.members:
                if member.name == name:
                    return member
        raise NotFound(f"no subscription named {name!r}")

    def ack(self, subscription: str, event_id: str, ok: bool) -> None:
        member = self.member(subscription)
        waiting = member.acks.get(event_id)
        if waiting is None or waiting.done():
            raise NotFound(f"{subscription} is not waiting for an ack of {event_id}")
        waiting.set_result(ok)

    def status(self) -> list[dict[str, Any]]:
        head = self.project.log.committed_sequence
        return [
            {**member.status(), "durable": c.durable, "cursor": c.cursor, "lag": head - c.cursor}
            for c in self.consumers.values()
            for member in c.members
        ]


def _named_keys(config: ProjectConfig) -> set[str]:
    """The cursor keys of everything the config names, whether it runs now or not (a disabled
    endpoint keeps its cursor: enabled again, it resumes)."""
    keys = {f"queue:{s.options.queue}" if s.options.queue else f"sub:{s.name}" for s in config.subscriptions}
    return keys | {f"webhook:{e.id}" for e in config.events.webhooks.endpoints}


def _read_cursors(project: Path) -> dict[str, int]:
    try:
        data = json.loads((project / CURSORS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


# The checkpoint thread and a leaving subscriber may both update the file.
_cursors_lock = threading.Lock()


def _merge_cursors(project: Path, cursors: dict[str, int]) -> None:
    with _cursors_lock:
        merged = {**_read_cursors(project), **cursors}
        durable.write_atomically(project / CURSORS, json.dumps(merged, indent=1, sort_keys=True).encode())


def _drop_cursors(project: Path, keys: list[str]) -> None:
    with _cursors_lock:
        kept = {k: v for k, v in _read_cursors(project).items() if k not in keys}
        durable.write_atomically(project / CURSORS, json.dumps(kept, indent=1, sort_keys=True).encode())
