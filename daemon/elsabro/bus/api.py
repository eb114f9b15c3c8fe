"""The seed's EventBus in Python: one API, as a client of the daemon or embedded.

    async with EventBus() as bus:                          # client mode: through the daemon
        await bus.subscribe("build.done", on_build)
        await bus.publish("build.done", {"ok": True})

    async with EventBus.embedded(store="memory") as bus:   # in this process, no daemon
        ...

Both modes run the same code around a handler (delivery/members.py: retries with backoff,
timeouts, manual acks, dead letters, `event.handler.failed`), so a program, its tests
and a JSON subscription all see the same behaviour. Handlers get a `StoredEvent`; async
handlers run in the event loop, plain functions in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from typing_extensions import Unpack

from elsabro.bus.subscriber import (
    Filter,
    Handler,
    SubscribeOptions,
    Subscriber,
    call_handler,
    new_subscription_id,
    selection,
)
from elsabro.config.schema import one_line
from elsabro.core.errors import BadRequest, EventTimeout, UsageError
from elsabro.core.model import PublishRequest, StoredEvent
from elsabro.core.settings import Settings, default_project
from elsabro.store.query import Query, parse_time

if TYPE_CHECKING:
    from elsabro.bus.embedded import EmbeddedBackend
    from elsabro.bus.remote import ClientBackend

__all__ = ["EventBus", "SubscribeOptions", "Subscription"]

logging.getLogger("elsabro").addHandler(logging.NullHandler())  # a library: the program decides

Time = str | datetime


@dataclass(frozen=True)
class Subscription:
    """What `subscribe` returns: the subscription's id, and its manual acks.

    >>> sub = await bus.subscribe("task.created", handler, ack="manual")
    >>> await sub.ack(event)            # inside or after the handler
    """

    id: str
    name: str  # the name given, else the id: dead letters and `event.handler.failed` use it
    selector: str
    options: SubscribeOptions
    _bus: EventBus = field(repr=False, compare=False)

    async def ack(self, event: StoredEvent | str, ok: bool = True) -> None:
        """Acknowledge (or, with ok=False, reject) an event of an `ack="manual"` subscription.

        >>> await sub.ack(event)
        """
        event_id = event if isinstance(event, str) else event.id
        subscriber = self._bus._subscribers.get(self.id)
        if subscriber is None:
            raise UsageError(f"subscription {self.id} has ended: nothing to acknowledge")
        await self._bus._backend.ack(subscriber, event_id, ok)

    async def nack(self, event: StoredEvent | str) -> None:
        """Reject an event of an `ack="manual"` subscription: that attempt fails (and is retried).

        >>> await sub.nack(event)
        """
        await self.ack(event, ok=False)


class EventBus:
    """Publish, subscribe, replay and query a project's events.

    `EventBus(project)` is a client of the daemon (started if none answers); the events
    go into the project's log and subscriptions are fed by the daemon, surviving its
    restarts. `EventBus.embedded(...)` runs the same bus inside this process.
    """

    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        start_daemon: bool = True,
    ) -> None:
        """A client of the daemon for `project` (default: the git top level of the cwd).

        >>> async with EventBus("/path/to/project") as bus: ...
        """
        from elsabro.bus.remote import ClientBackend

        directory = Path(project).absolute() if project is not None else default_project()
        self._attach(ClientBackend(settings or Settings.from_env(), str(directory), start_daemon), directory)

    def _attach(self, backend: ClientBackend | EmbeddedBackend, project: Path | None) -> None:
        self.project = project
        self._backend = backend
        self._subscribers: dict[str, Subscriber] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._started = False

    @classmethod
    def embedded(
        cls,
        store: Literal["memory", "file", "sqlite"] = "memory",
        path: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
    ) -> EventBus:
        """A bus inside this process, no daemon: `memory` keeps nothing; `file` and `sqlite`
        keep the log of the project at `path` (which no daemon may serve meanwhile).

        >>> async with EventBus.embedded() as bus: ...
        """
        from elsabro.bus.embedded import EmbeddedBackend

        bus = cls.__new__(cls)
        directory = Path(path).absolute() if path is not None else None
        bus._attach(EmbeddedBackend(store, directory, settings or Settings.from_env()), directory)
        return bus

    @property
    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions of this bus, oldest first."""
        return list(self._subscriptions.values())

    @property
    def mode(self) -> Literal["client", "embedded"]:
        from elsabro.bus.embedded import EmbeddedBackend

        return "embedded" if isinstance(self._backend, EmbeddedBackend) else "client"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (client) or open the log (embedded); `async with` calls it.

        >>> bus = EventBus(); await bus.start()
        """
        if not self._started:
            await self._backend.start()
            self._started = True

    async def close(self) -> None:
        """End every subscription and release the connection or the log.

        >>> await bus.close()
        """
        self._subscribers.clear()
        self._subscriptions.clear()
        await self._backend.close()
        self._started = False

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any = None,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        type: str | None = None,
    ) -> StoredEvent:
        """Store one event and return it as stored (with its sequence), once it is on disk.

        >>> event = await bus.publish("build.done", {"ok": True}, correlation_id="build-7")
        """
        [stored] = await self.publish_batch(
            [
                {
                    "topic": topic,
                    "payload": payload,
                    "correlation_id": correlation_id,
                    "causation_id": causation_id,
                    "metadata": metadata,
                    "source": source,
                    "type": type,
                }
            ]
        )
        return stored

    async def publish_batch(self, events: Iterable[Mapping[str, Any]]) -> list[StoredEvent]:
        """Store several events atomically: all of them or none, in this order.

        Each item takes `publish`'s arguments as keys (`topic`, `payload`, `correlation_id`...).

        >>> await bus.publish_batch([{"topic": "a.b", "payload": 1}, {"topic": "a.c"}])
        """
        items = list(events)
        if not items:
            raise UsageError("publish_batch needs at least one event")
        built = []
        for index, item in enumerate(items):
            try:
                built.append(PublishRequest.model_validate(dict(item)))
            except ValidationError as exc:
                prefix = f"events[{index}]: " if len(items) > 1 else ""
                raise BadRequest(prefix + one_line(exc)) from None
        await self.start()
        return [StoredEvent.model_validate(record) for record in await self._backend.append(built)]

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: Handler, **options: Unpack[SubscribeOptions]
    ) -> Subscription:
        """Call `handler` for every new event of `topic`; returns once the subscription is live.

        Options: name, queue, durable, ack ("auto"|"manual"), max_retries, retry_delay_s,
        timeout_s, ack_wait_s.

        >>> async def on_done(event): print(event.payload)
        >>> sub = await bus.subscribe("build.done", on_done, max_retries=5)
        """
        return await self._subscribe(topic, False, handler, None, options)

    async def subscribe_pattern(
        self, pattern: str, handler: Handler, **options: Unpack[SubscribeOptions]
    ) -> Subscription:
        """As `subscribe`, for a pattern: `*` is one segment, `#` any number.

        >>> await bus.subscribe_pattern("tool.*.failed", on_failure)
        """
        return await self._subscribe(pattern, True, handler, None, options)

    async def subscribe_filtered(
        self, topic: str, handler: Handler, filter: Filter | str, **options: Unpack[SubscribeOptions]
    ) -> Subscription:
        """As `subscribe`, for the events `filter` accepts: a Python callable (run where the
        handler runs; an event it rejects counts as handled) or a JMESPath expression.

        >>> await bus.subscribe_filtered("tool.bash.completed", on_slow, lambda e: e.payload["ms"] > 500)
        """
        if isinstance(filter, str):
            return await self._subscribe(topic, False, handler, filter, options)
        return await self._subscribe(topic, False, handler, None, options, check=filter)

    async def _subscribe(
        self,
        selector: str,
        pattern: bool,
        handler: Handler,
        jmespath_filter: str | None,
        options: SubscribeOptions,
        check: Filter | None = None,
        after: int | None = None,
    ) -> Subscription:
        if not callable(handler):
            raise UsageError("the handler must be a function (async or not) taking the event")
        subscription_id = new_subscription_id()
        chosen = selection(subscription_id, selector, pattern, jmespath_filter, options)
        subscriber = Subscriber(subscription_id, chosen, handler, check)
        await self.start()
        await self._backend.subscribe(subscriber, after)
        self._subscribers[subscription_id] = subscriber
        handle = Subscription(subscription_id, chosen.name, selector, dict(options), self)  # type: ignore[arg-type]
        self._subscriptions[subscription_id] = handle
        return handle

    async def unsubscribe(self, subscription_id: str) -> bool:
        """End a subscription; False if there is none with this id. No handler call starts after.

        >>> await bus.unsubscribe(sub.id)
        """
        subscriber = self._subscribers.pop(subscription_id, None)
        self._subscriptions.pop(subscription_id, None)
        if subscriber is None:
            return False
        await self._backend.unsubscribe(subscriber)
        return True

    async def once(
        self, topic: str, timeout_s: float | None = None, *, after_sequence: int | None = None
    ) -> StoredEvent:
        """The next event of `topic`: published after the call, or stored after `after_sequence`
        (no race with what was published just before); EventTimeout after `timeout_s`.

        >>> request = await bus.publish("review.requested", {"pr": 7})
        >>> verdict = await bus.once("review.done", timeout_s=60, after_sequence=request.sequence)
        """
        arrived: asyncio.Future[StoredEvent] = asyncio.get_running_loop().create_future()

        async def catch(event: StoredEvent) -> None:
            if not arrived.done():
                arrived.set_result(event)

        sub = await self._subscribe(topic, False, catch, None, {"max_retries": 0}, after=after_sequence)
        try:
            return await asyncio.wait_for(arrived, timeout_s)
        except asyncio.TimeoutError:
            raise EventTimeout(f"no {topic} event within {timeout_s:g} s") from None
        finally:
            await self.unsubscribe(sub.id)

    # -- the past ------------------------------------------------------------------------

    async def replay(
        self, topic: str, since: Time, until: Time | None = None, handler: Handler | None = None
    ) -> list[StoredEvent]:
        """The stored events of `topic` (or pattern) between two times, handed to `handler`
        in order if one is given (each once, no retries: a replay is repeated by hand).

        >>> await bus.replay("tool.#", since="2h", handler=reindex)
        """
        events = await self.history(topic=topic, since=since, until=until)
        if handler is not None:
            for event in events:
                await call_handler(handler, event)
        return events

    async def history(
        self,
        *,
        topic: str | None = None,
        since: Time | None = None,
        until: Time | None = None,
        correlation_id: str | None = None,
        event_id: str | None = None,
        caused_by: str | None = None,
        after_sequence: int = 0,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Stored events, oldest first: every filter optional, `limit` keeps the newest.

        Times are ISO 8601, a datetime, or back from now (`15m`, `2h`, `7d`).

        >>> await bus.history(correlation_id=session_id, topic="tool.#", limit=20)
        """
        query = Query(
            topic=topic,
            since=_time(since),
            until=_time(until),
            correlation_id=correlation_id,
            event_id=event_id,
            caused_by=caused_by,
            after_sequence=after_sequence,
            limit=limit,
        )
        await self.start()
        return [StoredEvent.model_validate(record) for record in await self._backend.select(query)]

    async def dead_letters(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """The dead letters (of one subscription's name), as `elsabro dlq list` shows them.

        >>> [letter["error"]["message"] for letter in await bus.dead_letters("indexer")]
        """
        await self.start()
        return await self._backend.dead_letters(subscription)


def _time(value: Time | None) -> str | None:
    if value is None:
        return None
    return parse_time(value.isoformat() if isinstance(value, datetime) else value)
