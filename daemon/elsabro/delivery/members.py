"""The receivers of a project's events, and what every subscription does the same way.

A *member* is one receiver inside a consumer (dispatch.py): a subscription of the
project's config, a webhook endpoint (endpoints.py), a Python callable of an embedded
bus (bus/embedded.py) or a subscriber connected over the socket (pushed.py). They differ
only in how one attempt reaches the handler (`run_handler`); the rest is one
implementation for all of them, as the seed's handleWithRetry:

- Matching: the topic or pattern, then the JMESPath filter. `event.handler.failed` is
  never delivered to the subscription that failed.
- Each attempt is bounded by `timeout`; up to `maxRetries` more attempts follow, after
  `retryDelay * 2^attempt` ms with +-20% jitter; then the event goes to the dead letters
  and `event.handler.failed` is published, unless the event that failed is itself an
  `event.handler.failed`: a failure never causes another failure event, so two failing
  subscriptions on `#` cannot feed each other (that one is dead-lettered and logged
  only). With `ack: manual` an attempt succeeds only
  when an ack arrives within `ackWait` (it may arrive while the handler still runs); a
  nack or silence is a failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from elsabro.config.schema import Options, Subscription
from elsabro.core.errors import HandlerError
from elsabro.core.model import Event
from elsabro.core.topics import matches
from elsabro.delivery import handlers
from elsabro.delivery.context import ProjectContext
from elsabro.delivery.deadletters import DeadLetters

log = logging.getLogger("elsabro.dispatch")

JITTER = 0.2
FAILED_TOPIC = "event.handler.failed"


class Member:
    """One receiver inside a consumer, and its state.

    `selector` is a topic or pattern and `filter` a JMESPath expression (or None); a
    subclass that matches differently (a webhook endpoint) overrides `wants`.
    """

    def __init__(
        self, name: str, spec: Any, options: Options, selector: str = "#", filter: str | None = None
    ) -> None:
        self.name = name
        self.spec = spec  # what it was built from: a changed spec means a new consumer
        self.options = options
        self.durable = options.durable
        self.selector = selector
        self.filter = jmespath.compile(filter) if filter else None
        self.acks: dict[str, asyncio.Future[bool]] = {}  # manual acks awaited, by event id
        self.in_flight: int | None = None
        self.in_flight_since = 0.0
        self.failures = 0  # failed attempts in a row on the event in flight
        self.delivered = 0
        self.dead_lettered = 0
        self.last_error: str | None = None

    # -- matching --------------------------------------------------------------------------

    def wants(self, record: dict[str, Any]) -> bool:
        if not matches(self.selector, record["topic"]):
            return False
        if self.filter is None:
            return True
        try:
            return bool(self.filter.search(record))
        except (JMESPathError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            # An expression that cannot be evaluated on this event (`payload.n > \`2\`` on a
            # string, `floor` of an infinity) does not match it; the subscription goes on.
            log.warning("%s: filter skipped %s: %s", self.name, record.get("id"), exc)
            return False

    def receives(self, record: dict[str, Any]) -> bool:
        """`wants`, except that a receiver never hears of its own failure: no loops."""
        payload = record.get("payload")
        about = payload.get("subscription") if isinstance(payload, dict) else None
        own_failure = record["topic"] == FAILED_TOPIC and about == self.name
        return not own_failure and self.wants(record)

    # -- delivering ------------------------------------------------------------------------

    async def run_handler(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        """Hand the event to the handler once; raise HandlerError if it failed."""
        raise NotImplementedError

    async def attempt(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        """One attempt (used by `dlq retry` too), its manual ack included; HandlerError on failure."""
        if self.options.ack != "manual":
            await self.run_handler(project, record, number)
            return
        # Awaited before the handler runs: the handler itself may send the ack.
        waiting: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.acks[record["id"]] = waiting
        try:
            await self.run_handler(project, record, number)
            ack_wait_s = self.options.ack_wait / 1000
            try:
                ok = await asyncio.wait_for(waiting, ack_wait_s)
            except asyncio.TimeoutError:
                raise HandlerError(f"no ack within {ack_wait_s:g} s") from None
        finally:
            self.acks.pop(record["id"], None)
        if not ok:
            raise HandlerError("nacked")

    async def deliver(self, project: ProjectContext, record: dict[str, Any]) -> None:
        """Attempts with backoff until one succeeds or the retries run out (then dead letter)."""
        options = self.options
        for number in range(1, options.max_retries + 2):
            try:
                await self.attempt(project, record, number)
            except HandlerError as exc:
                self.failed(record, exc, number)
                if number > options.max_retries:
                    await self.park(project, record, exc, retry_count=number - 1)
                    return
                jitter = random.uniform(1 - JITTER, 1 + JITTER)
                await asyncio.sleep(options.retry_delay / 1000 * 2 ** (number - 1) * jitter)
            else:
                self.succeeded()
                return

    def failed(self, record: dict[str, Any], exc: HandlerError | str, number: int) -> None:
        self.failures += 1
        self.last_error = str(exc)
        log.warning("%s: %s attempt %d failed: %s", self.name, record["id"], number, exc)

    def succeeded(self) -> None:
        self.failures = 0
        self.delivered += 1

    async def park(
        self, project: ProjectContext, record: dict[str, Any], exc: HandlerError, retry_count: int
    ) -> None:
        """Give up on the event: dead letter, `event.handler.failed`, and move on."""
        await dead_letter(project, self.name, record, exc, retry_count)
        self.failures = 0
        self.dead_lettered += 1

    # -- reporting -------------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        options = self.options
        limit_s = (options.timeout + (options.ack_wait if options.ack == "manual" else 0)) / 1000
        late = self.in_flight is not None and time.monotonic() - self.in_flight_since > limit_s
        return late or self.failures > 0

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "selector": self.selector,
            "queue": self.options.queue,
            "inFlight": self.in_flight,
            "delivered": self.delivered,
            "failures": self.failures,
            "deadLettered": self.dead_lettered,
            "lastError": self.last_error,
            "stalled": self.stalled,
        }


class SubscriptionMember(Member):
    """A subscription of the project's config: its handler runs a program, appends, republishes."""

    def __init__(self, sub: Subscription) -> None:
        super().__init__(sub.name, sub, sub.options, sub.selector, sub.filter)
        self.sub = sub

    async def run_handler(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        delivery = handlers.Delivery(record, self.name, number)
        await handlers.run(self.sub.handler, delivery, project, self.options.timeout / 1000)


async def dead_letter(
    project: ProjectContext, subscriber: str, record: dict[str, Any], exc: HandlerError, retry_count: int
) -> None:
    letters = DeadLetters(project.path)
    entry = await asyncio.to_thread(letters.add, record, subscriber, str(exc), exc.detail, retry_count)
    if record["topic"] == FAILED_TOPIC:
        # Publishing a failure about a failure event would let two failing subscriptions on
        # `#` feed each other for ever; one failure event per original event is the bound.
        log.warning(
            "%s: failed on %s %s; dead-lettered as %s, no further %s published",
            subscriber,
            FAILED_TOPIC,
            record["id"],
            entry["id"],
            FAILED_TOPIC,
        )
        return
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
