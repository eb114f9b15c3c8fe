"""A Python subscriber of the EventBus: its selection, its handler, and one call of it.

Both modes of the bus use this: an embedded bus calls `handle` from its dispatcher (a
member like any other, embedded.py); a client calls it for each attempt the daemon
pushes (remote.py). Either way the dispatcher around it retries, backs off, dead-letters
and publishes `event.handler.failed` (delivery/members.py), so a handler behaves the same in
both modes and as a JSON subscription would.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from pydantic import ValidationError

from elsabro.config.schema import Options, Selection, one_line
from elsabro.core.errors import HandlerError, UsageError
from elsabro.core.model import StoredEvent
from elsabro.core.topics import check_pattern, check_topic

log = logging.getLogger("elsabro.bus")

Handler = Callable[[StoredEvent], Awaitable[None] | None]
Filter = Callable[[StoredEvent], bool]


class SubscribeOptions(TypedDict, total=False):
    """The seed's subscription options, with Python names and units."""

    name: str  # the subscriber's name: a durable cursor is kept under it
    queue: str  # subscribers sharing a queue compete: each event goes to one of them
    durable: bool  # resume from the cursor after the process or the daemon restarts
    ack: Literal["auto", "manual"]  # manual: an attempt succeeds once `Subscription.ack` is called
    max_retries: int
    retry_delay_s: float  # doubled after every attempt, +-20% jitter
    timeout_s: float  # per attempt
    ack_wait_s: float  # how long a manual ack may take


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(6)


def selection(
    subscription_id: str, selector: str, pattern: bool, jmespath_filter: str | None, options: SubscribeOptions
) -> Selection:
    """The selection the dispatcher runs, or UsageError naming the bad argument."""
    (check_pattern if pattern else check_topic)(selector)
    if options.get("durable") and not options.get("name") and not options.get("queue"):
        raise UsageError("a durable subscription needs a name (or a queue): its cursor is kept under it")
    try:
        seed_options = Options(
            queue=options.get("queue"),
            durable=options.get("durable", False),
            ack=options.get("ack", "auto"),
            max_retries=options.get("max_retries", 3),
            retry_delay=round(options.get("retry_delay_s", 1.0) * 1000),
            timeout=max(1, round(options.get("timeout_s", 30.0) * 1000)),
            ack_wait=max(1, round(options.get("ack_wait_s", 30.0) * 1000)),
        )
        return Selection(
            name=options.get("name") or subscription_id,
            topic=None if pattern else selector,
            pattern=selector if pattern else None,
            filter=jmespath_filter,
            options=seed_options,
        )
    except ValidationError as exc:
        raise UsageError(one_line(exc)) from None


@dataclass(frozen=True)
class Subscriber:
    """One `subscribe` call: what it selects, and the Python code that runs for it."""

    id: str
    selection: Selection
    handler: Handler
    check: Filter | None = None  # a Python filter: runs where the handler runs

    async def handle(self, record: dict[str, Any]) -> None:
        """One attempt: the filter, then the handler within its timeout; HandlerError on failure.

        An event the Python filter rejects counts as handled without calling the handler.
        """
        event = StoredEvent.model_validate(record)
        if self.check is not None and not self._accepts(event):
            return
        timeout_s = self.selection.options.timeout / 1000
        try:
            await asyncio.wait_for(call_handler(self.handler, event), timeout_s)
        except asyncio.TimeoutError:
            raise HandlerError(f"timed out after {timeout_s:g} s") from None
        except Exception as exc:  # the handler's own failure, whatever it is
            raise HandlerError(f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None

    def _accepts(self, event: StoredEvent) -> bool:
        assert self.check is not None
        try:
            return bool(self.check(event))
        except Exception as exc:  # as a JMESPath filter that cannot be evaluated: no match
            log.warning("%s: filter skipped %s: %s", self.selection.name, event.id, exc)
            return False


async def call_handler(handler: Handler, event: StoredEvent) -> None:
    """An async handler runs in the loop; a plain function in a thread, so it cannot block it."""
    if _is_async(handler):
        await handler(event)  # type: ignore[misc]  # an async callable returns an awaitable
        return
    result = await asyncio.to_thread(handler, event)
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        await result


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004  # an object with an async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
