"""Subscriptions at work: matching, ordered delivery, retries, dead letters, cursors, queues.

Every subscription, or every queue group (subscriptions sharing `options.queue`), is one
*consumer* that reads the project's log in order from its cursor, as a pull consumer
does: nothing is queued in memory per subscription, a slow handler delays only its own
consumer, and events that arrived through the spool are read like any other.

- Matching, as the seed's notifySubscribers: topic or pattern, then the JMESPath filter.
  `event.handler.failed` is never delivered to the subscription that failed.
- One event in flight per subscription: a plain subscription delivers in log order. A
  queue group hands each event to exactly one free member, round-robin, preferring
  members whose last delivery succeeded; order then holds per member only.
- Each attempt is bounded by `timeout`; up to `maxRetries` more attempts follow, after
  `retryDelay * 2^attempt` ms with +-20% jitter; then the event goes to the dead letters
  and `event.handler.failed` is published. With `ack: manual` an attempt succeeds only
  when `elsabro ack` arrives within `ackWait`; a nack or silence is a failed attempt.
- The cursor is the highest sequence up to which every event was handled. A durable
  consumer checkpoints it to `.elsabro/cursors.json` every second and at shutdown, so
  after a crash it redelivers at most the events handled in the last second; others
  start at the head of the log and see only new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath.exceptions import JMESPathError

from . import durable, handlers
from .config import ProjectConfig, Subscription
from .deadletters import DeadLetters
from .errors import HandlerError, NotFound
from .model import Event

if TYPE_CHECKING:
    from .projects import Project

log = logging.getLogger("elsabro.dispatch")

CURSORS = Path(".elsabro") / "cursors.json"
CHECKPOINT_S = 1.0
READ_BATCH = 256
JITTER = 0.2
FAILED_TOPIC = "event.handler.failed"


class Member:
    """One receiver inside a consumer (a subscription, or a webhook endpoint), and its state."""

    def __init__(self, name: str, spec: Any, durable: bool) -> None:
        self.name = name
        self.spec = spec  # what it was built from: a changed spec means a new consumer
        self.durable = durable
        self.in_flight: int | None = None
        self.in_flight_since = 0.0
        self.failures = 0  # failed attempts in a row on the event in flight
        self.delivered = 0
        self.dead_lettered = 0
        self.last_error: str | None = None

    def wants(self, record: dict[str, Any]) -> bool:
        raise NotImplementedError

    def receives(self, record: dict[str, Any]) -> bool:
        """`wants`, except that a receiver never hears of its own failure: no loops."""
        payload = record.get("payload")
        about = payload.get("subscription") if isinstance(payload, dict) else None
        own_failure = record["topic"] == FAILED_TOPIC and about == self.name
        return not own_failure and self.wants(record)

    def failed(self, record: dict[str, Any], exc: HandlerError | str, number: int) -> None:
        self.failures += 1
        self.last_error = str(exc)
        log.warning("%s: %s attempt %d failed: %s", self.name, record["id"], number, exc)

    def succeeded(self) -> None:
        self.failures = 0
        self.delivered += 1

    async def park(
        self, project: Project, record: dict[str, Any], exc: HandlerError, retry_count: int
    ) -> None:
        """Give up on the event: dead letter, `event.handler.failed`, and move on."""
        await dead_letter(project, self.name, record, exc, retry_count)
        self.failures = 0
        self.dead_lettered += 1

    async def deliver(self, project: Project, record: dict[str, Any]) -> None:
        """Every attempt the event gets, ending in success or a dead letter."""
        raise NotImplementedError

    async def attempt(self, project: Project, record: dict[str, Any], number: int) -> None:
        """One attempt (used by `dlq retry` too); raises HandlerError on failure."""
        raise NotImplementedError

    @property
    def stalled(self) -> bool:
        return self.failures > 0

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inFlight": self.in_flight,
            "delivered": self.delivered,
            "failures": self.failures,
            "deadLettered": self.dead_lettered,
            "lastError": self.last_error,
            "stalled": self.stalled,
        }


class SubscriptionMember(Member):
    """A subscription of the project's config."""

    def __init__(self, sub: Subscription) -> None:
        super().__init__(sub.name, sub, sub.options.durable)
        self.sub = sub
        self.filter = jmespath.compile(sub.filter) if sub.filter else None
        self.acks: dict[str, asyncio.Future[bool]] = {}

    def status(self) -> dict[str, Any]:
        return {**super().status(), "selector": self.sub.selector, "queue": self.sub.options.queue}

    async def attempt(self, project: Project, record: dict[str, Any], number: int) -> None:
        """One attempt through the handler, and its manual ack if the subscription wants one."""
        options = self.sub.options
        delivery = handlers.Delivery(record, self.name, number)
        await handlers.run(self.sub.handler, delivery, project, options.timeout / 1000)
        if options.ack != "manual":
            return
        waiting: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.acks[record["id"]] = waiting
        try:
            ok = await asyncio.wait_for(waiting, options.ack_wait / 1000)
        except asyncio.TimeoutError:
            raise HandlerError(f"no ack within {options.ack_wait / 1000:g} s") from None
        finally:
            self.acks.pop(record["id"], None)
        if not ok:
            raise HandlerError("nacked")

    async def deliver(self, project: Project, record: dict[str, Any]) -> None:
        """Attempts with backoff until one succeeds or the retries run out (then dead letter)."""
        options = self.sub.options
        for number in range(1, options.max_retries + 2):
            try:
                await self.attempt(project, record, number)
            except HandlerError as exc:
                self.failed(record, exc, number)
                if number > options.max_retries:
                    await self.park(project, record, exc, retry_count=number - 1)
                    return
                delay_s = (
                    options.retry_delay / 1000 * 2 ** (number - 1) * random.uniform(1 - JITTER, 1 + JITTER)
                )
                await asyncio.sleep(delay_s)
            else:
                self.succeeded()
                return

    def wants(self, record: dict[str, Any]) -> bool:
        if not self.sub.selects(record["topic"]):
            return False
        if self.filter is None:
            return True
        try:
            return bool(self.filter.search(record))
        except (JMESPathError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            # An expression that cannot be evaluated on this event (`payload.n > \`2\`` on a
            # string, `floor` of an infinity) does not match it; the subscription goes on.
            log.warning("%s: filter skipped %s: %s", self.sub.name, record.get("id"), exc)
            return False

    @property
    def stalled(self) -> bool:
        options = self.sub.options
        limit_s = (options.timeout + (options.ack_wait if options.ack == "manual" else 0)) / 1000
        late = self.in_flight is not None and time.monotonic() - self.in_flight_since > limit_s
        return late or self.failures > 0


class Consumer:
    """Reads the log from a cursor and hands matching events to its members."""

    def __init__(self, name: str, members: list[Member], project: Project, cursor: int) -> None:
        self.name = name
        self.members = members
        self.project = project
        self.durable = any(m.durable for m in members)
        self.cursor = cursor
        self._read_position = cursor
        self._in_flight: set[int] = set()
        self._freed = asyncio.Event()
        self._next_member = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"consumer {self.name}")

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._runner] if self._runner else []), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            for sequence, record in await self._read():
                self._read_position = sequence
                candidates = [m for m in self.members if m.receives(record)]
                if not candidates:
                    self._handled(sequence)
                    continue
                member = await self._free_member(candidates)
                member.in_flight, member.in_flight_since = sequence, time.monotonic()
                self._in_flight.add(sequence)
                task = asyncio.get_running_loop().create_task(self._deliver(member, sequence, record))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _read(self) -> list[tuple[int, dict[str, Any]]]:
        log_ = self.project.log
        while log_.committed_sequence <= self._read_position:
            await log_.wait_beyond(self._read_position)
        after, upto = self._read_position, log_.committed_sequence
        lines = await asyncio.to_thread(lambda: list(islice(log_.read(after, upto), READ_BATCH)))
        return [(sequence, json.loads(line)) for sequence, line in lines]

    async def _free_member(self, candidates: list[Member]) -> Member:
        while True:
            free = [m for m in candidates if m.in_flight is None]
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
        self._handled(sequence)
        self._freed.set()


async def dead_letter(
    project: Project, subscriber: str, record: dict[str, Any], exc: HandlerError, retry_count: int
) -> None:
    letters = DeadLetters(project.path)
    entry = await asyncio.to_thread(letters.add, record, subscriber, str(exc), exc.detail, retry_count)
    failed = Event.new(
        FAILED_TOPIC,
        correlation_id=record.get("correlationId"),
        causation_id=record["id"],
        metadata={"projectDir": str(project.path)},
        payload={
            "eventId": record["id"],
            "topic": record["topic"],
            "subscription": subscriber,
            "error": str(exc),
            "retryCount": retry_count,
            "deadLetterId": entry["id"],
        },
    )
    await project.log.append([failed])


class Dispatcher:
    """A project's consumers, rebuilt when its configuration changes."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.consumers: dict[str, Consumer] = {}
        self._checkpointer: asyncio.Task[None] | None = None
        self._saved: dict[str, int] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        from .webhooks import Clients

        self.clients = Clients()

    def apply(self, config: ProjectConfig) -> None:
        """Run exactly the subscriptions and endpoints of `config`; unchanged consumers keep running."""
        groups = self._groups(config)
        saved = _read_cursors(self.project.path)
        fresh: dict[str, int] = {}
        for key in list(self.consumers):
            if [m.spec for m in self.consumers[key].members] != [m.spec for m in groups.get(key, [])]:
                self._spawn_stop(self.consumers.pop(key))
        for key, members in groups.items():
            if key in self.consumers:
                continue
            durable = any(m.durable for m in members)
            head = self.project.log.committed_sequence
            cursor = saved.get(key, head) if durable else head
            if durable and key not in saved:
                fresh[key] = cursor  # saved at once: a crash before the first checkpoint must not skip
            consumer = Consumer(key, members, self.project, min(cursor, head))
            self.consumers[key] = consumer
            consumer.start()
        if fresh:
            _write_cursors(self.project.path, {**saved, **fresh})
        if self._checkpointer is None:
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    def _groups(self, config: ProjectConfig) -> dict[str, list[Member]]:
        """Consumers by cursor key: a subscription, a queue group, or a webhook endpoint."""
        groups: dict[str, list[Member]] = {}
        for sub in config.subscriptions:
            key = f"queue:{sub.options.queue}" if sub.options.queue else f"sub:{sub.name}"
            groups.setdefault(key, []).append(SubscriptionMember(sub))
        from .webhooks import endpoint_groups  # webhooks builds on this module

        groups.update(endpoint_groups(config, self.clients))
        return groups

    def _spawn_stop(self, consumer: Consumer) -> None:
        task = asyncio.get_running_loop().create_task(consumer.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        await asyncio.gather(*(c.stop() for c in self.consumers.values()), *self._stopping)
        await asyncio.to_thread(self._checkpoint)
        await self.clients.close()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        cursors = {key: c.cursor for key, c in self.consumers.items() if c.durable}
        if cursors and cursors != self._saved:
            _write_cursors(self.project.path, {**_read_cursors(self.project.path), **cursors})
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
        waiting = member.acks.get(event_id) if isinstance(member, SubscriptionMember) else None
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


def _read_cursors(project: Path) -> dict[str, int]:
    try:
        data = json.loads((project / CURSORS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cursors(project: Path, cursors: dict[str, int]) -> None:
    durable.write_atomically(project / CURSORS, json.dumps(cursors, indent=1, sort_keys=True).encode())
