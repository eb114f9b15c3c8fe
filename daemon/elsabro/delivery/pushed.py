"""Subscribers connected over the socket: the daemon's side of `EventBus` in client mode.

A client process subscribes with `POST /v1/subscribe` and keeps the response open. The
daemon adds a member to the project's dispatcher (dispatch.py) whose attempts are lines
pushed down that response:

    {"subscribed": {"name": ..., "cursor": N}}         first, once the member has joined
    {"attempt": 1, "event": {...stored record...}}     one per attempt, one at a time
    {"error": {"code": ..., "message": ...}}           instead of `subscribed`, if refused

The client runs its handler and answers each attempt with `POST /v1/subscriptions/answer`
({"subscription", "eventId", "ok", "error", "detail"}); `POST /v1/unsubscribe`
({"subscription"}) ends it. Retries, backoff, timeouts, manual acks,
dead letters and `event.handler.failed` are the dispatcher's, exactly as for the
config's subscriptions. When the response ends (the client exits, unsubscribes or the
daemon stops), the member leaves; an event it had in flight goes back to its group, or
stays unhandled below a durable cursor until the subscriber comes back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from elsabro.config.schema import Selection, one_line
from elsabro.core.errors import BadRequest, ElsabroError, HandlerError, NotFound
from elsabro.delivery.context import ProjectContext
from elsabro.delivery.dispatch import Dispatcher
from elsabro.delivery.members import Member

# How long past its own timeout an attempt waits for the subscriber's answer: the
# subscriber enforces the timeout on its handler and answers a failure itself.
ANSWER_GRACE_S = 5.0


def parse_subscribe(body: Any) -> tuple[Selection, int | None]:
    """The selection and the `after` sequence of a subscribe request, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("a subscription is a JSON object with a name and a topic or pattern")
    after = body.pop("after", None)
    if after is not None and (not isinstance(after, int) or after < 0):
        raise BadRequest("after must be a sequence number (an integer >= 0)")
    try:
        return Selection.model_validate(body), after
    except ValidationError as exc:
        raise BadRequest(one_line(exc)) from None


class PushMember(Member):
    """A connected subscriber: each attempt is pushed to it and waits for its answer."""

    def __init__(self, selection: Selection) -> None:
        super().__init__(selection.name, selection, selection.options, selection.selector, selection.filter)
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()  # None ends the response
        self.answers: dict[str, asyncio.Future[tuple[bool, str, str]]] = {}

    async def run_handler(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        answer: asyncio.Future[tuple[bool, str, str]] = asyncio.get_running_loop().create_future()
        self.answers[record["id"]] = answer
        self.outbox.put_nowait(_line({"attempt": number, "event": record}))
        wait_s = self.options.timeout / 1000 + ANSWER_GRACE_S
        try:
            ok, error, detail = await asyncio.wait_for(answer, wait_s)
        except asyncio.TimeoutError:
            raise HandlerError(f"no answer from the subscriber within {wait_s:g} s") from None
        finally:
            self.answers.pop(record["id"], None)
        if not ok:
            raise HandlerError(error or "failed", detail)

    def answer(self, event_id: str, ok: bool, error: str, detail: str) -> None:
        waiting = self.answers.get(event_id)
        if waiting is None or waiting.done():
            raise NotFound(f"{self.name} is not waiting for an answer about {event_id}")
        waiting.set_result((ok, error, detail))


async def pushes(dispatcher: Dispatcher, member: PushMember, after: int | None) -> AsyncIterator[bytes]:
    """The response of a subscribe request: joined when it starts, left when it ends."""
    try:
        consumer = dispatcher.join(member, after)
    except ElsabroError as exc:
        yield _line({"error": {"code": exc.code, "message": str(exc)}})
        return
    try:
        yield _line({"subscribed": {"name": member.name, "cursor": consumer.cursor}})
        while (line := await member.outbox.get()) is not None:
            yield line
    finally:
        dispatcher.leave(member)


async def unsubscribe(dispatcher: Dispatcher, body: Any) -> None:
    """End a subscriber now: it has left (and its durable cursor is saved) when this returns.

    Without it, the daemon would notice only when the response's connection closes, and a
    subscriber coming back at once under the same name could find the old one still there.
    """
    member = _pushed(dispatcher, body)
    await dispatcher.leave(member)
    member.outbox.put_nowait(None)


def answer(dispatcher: Dispatcher, body: Any) -> None:
    """A subscriber's answer to one attempt."""
    if not isinstance(body, dict) or not isinstance(body.get("eventId"), str):
        raise BadRequest('an answer is {"subscription", "eventId", "ok", "error"}')
    member = _pushed(dispatcher, body)
    error, detail = str(body.get("error") or ""), str(body.get("detail") or "")
    member.answer(body["eventId"], bool(body.get("ok")), error, detail)


def _pushed(dispatcher: Dispatcher, body: dict[str, Any]) -> PushMember:
    member = dispatcher.member(str(body.get("subscription")))
    if not isinstance(member, PushMember):
        raise NotFound(f"{member.name} is not a connected subscriber")
    return member


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
