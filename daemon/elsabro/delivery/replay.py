"""Replay: past events sent through a handler again, in log order (the seed's `replay`).

A replay reads the events a query selects (topic pattern, time range, session) and
hands each one to a target: a configured subscription's handler (its filter applies,
as if it were receiving them live), a one-off `exec` command, or a configured webhook
endpoint. It builds its own receiver from the target's config, so a live subscription
or endpoint keeps its cursor, its in-flight event and its counters: replaying never
moves or disturbs them.

Each delivered event carries `metadata.replay: true`, so a handler can tell a replay
from the live event. Every event gets one attempt; a failure is reported with the
event's id and the replay goes on (it is run by hand and can be run again, so nothing
goes to the dead letters). Progress is reported as the fraction of the selected part
of the log read so far, which needs no counting pass first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from elsabro.config.schema import ExecHandler, Subscription
from elsabro.core.errors import BadRequest, HandlerError, NotFound
from elsabro.delivery.context import ProjectContext
from elsabro.delivery.endpoints import EndpointMember
from elsabro.delivery.members import Member, SubscriptionMember

if TYPE_CHECKING:
    from elsabro.store.query import Query

# Report progress at most this often, in events handled.
PROGRESS_EVERY = 500
_READ_BATCH = 1_000
_MAX_REPORTED_FAILURES = 20


@dataclass
class Progress:
    """Where a replay is: sent to the client as it goes, and once more at the end."""

    first_sequence: int
    last_sequence: int
    sequence: int = 0  # the last sequence read
    delivered: int = 0
    skipped: int = 0  # selected by the query, refused by the subscription's own filter
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        span = max(1, self.last_sequence - self.first_sequence)
        read = min(span, max(0, self.sequence - self.first_sequence))
        return {
            "done": self.done,
            "fraction": 1.0 if self.done else round(read / span, 4),
            "delivered": self.delivered,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": self.failures,
        }


def target_member(project: ProjectContext, target: dict[str, Any]) -> Member:
    """A fresh receiver for a replay target: {"subscription": NAME} | {"exec": ARGV} | {"webhook": ID}."""
    config = project.config
    if "subscription" in target:
        found = [s for s in config.subscriptions if s.name == target["subscription"]]
        if not found:
            raise NotFound(f"no subscription {target['subscription']!r} in the project's config")
        sub = found[0]
        # A replay waits for no manual ack: nobody would send one for a replayed event.
        options = sub.options.model_copy(update={"ack": "auto"})
        return SubscriptionMember(sub.model_copy(update={"options": options}))
    if "exec" in target:
        argv = target["exec"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise BadRequest("exec must be a non-empty list of strings (the command and its arguments)")
        return SubscriptionMember(
            Subscription(name="replay", pattern="#", handler=ExecHandler(type="exec", argv=argv))
        )
    if "webhook" in target:
        webhooks = config.events.webhooks
        endpoints = [e for e in webhooks.endpoints if e.id == target["webhook"]]
        if not endpoints:
            raise NotFound(f"no webhook endpoint {target['webhook']!r} in the project's config")
        member = EndpointMember(endpoints[0], webhooks, project.clients)
        member.disabled = False  # named on purpose: a disabled endpoint can be replayed to
        return member
    raise BadRequest("name a target: subscription, exec or webhook")


def _batches(lines: Iterator[bytes]) -> Iterator[list[bytes]]:
    while batch := list(islice(lines, _READ_BATCH)):
        yield batch


async def run(
    project: ProjectContext, query: Query, member: Member, lines: Iterator[bytes]
) -> AsyncIterator[Progress]:
    """Deliver every selected event to `member` in order, yielding progress now and then."""

    progress = Progress(query.after_sequence, project.log.committed_sequence)
    batches = _batches(lines)
    since_report = 0
    no_more: list[bytes] = []
    while batch := await asyncio.to_thread(next, batches, no_more):
        for line in batch:
            record = json.loads(line)
            progress.sequence = record["sequence"]
            if not member.wants(record):
                progress.skipped += 1
                continue
            record["metadata"] = {**(record.get("metadata") or {}), "replay": True}
            try:
                await member.attempt(project, record, 1)
            except HandlerError as exc:
                progress.failed += 1
                if len(progress.failures) < _MAX_REPORTED_FAILURES:
                    progress.failures.append({"id": record["id"], "error": str(exc)})
            else:
                progress.delivered += 1
            since_report += 1
            if since_report >= PROGRESS_EVERY:
                since_report = 0
                yield progress
    progress.done = True
    yield progress
