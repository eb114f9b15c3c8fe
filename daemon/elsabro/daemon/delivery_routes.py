"""The daemon's routes for events going out: subscriptions and their tests and acks, the Python
API's connected subscribers, dead letters, webhook deliveries sent again, and replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from elsabro.core.errors import BadRequest, HandlerError, NotFound
from elsabro.core.model import new_event_id, now_iso
from elsabro.core.redact import redact_event
from elsabro.daemon.http import Request, Response
from elsabro.daemon.routes import NDJSON, Routes, json_object, readable
from elsabro.delivery import pushed, webhooks
from elsabro.delivery import replay as replay_mod
from elsabro.delivery.deadletters import DeadLetters
from elsabro.projects.project import Project
from elsabro.store.query import Query, parse_time


class DeliveryRoutes(Routes):
    """Subscriptions, subscribers, dead letters, webhook deliveries and replay."""

    async def subscriptions(self, request: Request) -> Response:
        project = await self.existing(request)  # none has run for a project with no log yet
        if project is None:
            return Response.json({"subscriptions": [], "config": {"problems": []}, "untrusted": None})
        config: dict[str, Any] = {"problems": project.config_problems}
        if project.config_problems:
            config["running"] = "last good config" if project.config_valid_once else "none"
        # `untrusted`: why the config's own subscriptions and endpoints are not running, if so.
        return Response.json(
            {"subscriptions": project.dispatcher.status(), "config": config, "untrusted": project.untrusted}
        )

    async def test_subscription(self, request: Request) -> Response:
        """Run one subscription's handler once on a given event; cursors stay as they are."""
        body = json_object(request)
        project = await self.project(request)
        member = project.dispatcher.member(str(body.get("name")))
        record = body.get("event")
        if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
            raise BadRequest("event must be an event object with at least a topic")
        # Redacted as if it had been stored: a handler may write or send what it is given.
        record = redact_event({"id": new_event_id(), "timestamp": now_iso(), **record}, project.log.rules)
        try:
            await member.attempt(project, record, 1)
        except HandlerError as exc:
            return Response.json({"ok": False, "error": str(exc), "detail": exc.detail})
        return Response.json({"ok": True})

    async def ack(self, request: Request) -> Response:
        body = json_object(request)
        project = await self.project(request)
        project.dispatcher.ack(
            str(body.get("subscription")), str(body.get("eventId")), bool(body.get("ok", True))
        )
        return Response.json({})

    async def subscribe(self, request: Request) -> Response:
        """A connected subscriber (delivery/pushed.py): the response streams its attempts until it ends."""
        selection, after = pushed.parse_subscribe(request.json())
        project = await self.project(request)
        member = pushed.PushMember(selection)
        return Response(content_type=NDJSON, stream=pushed.pushes(project.dispatcher, member, after))

    async def answer(self, request: Request) -> Response:
        project = await self.project(request)
        pushed.answer(project.dispatcher, json_object(request))
        return Response.json({})

    async def unsubscribe(self, request: Request) -> Response:
        project = await self.project(request)
        await pushed.unsubscribe(project.dispatcher, json_object(request))
        return Response.json({})

    async def dead_letters(self, request: Request) -> Response:
        project = await self.existing(request)
        if project is None:
            return Response.json({"deadLetters": []})
        since = parse_time(request.params["since"]) if request.params.get("since") else None
        letters = DeadLetters(project.path)
        if request.params.get("id"):
            return Response.json(await asyncio.to_thread(letters.get, request.params["id"]))
        found = await asyncio.to_thread(letters.entries, request.params.get("subscription") or None, since)
        return Response.json({"deadLetters": found})

    async def retry_dead_letters(self, request: Request) -> Response:
        """Each selected entry goes once more through its subscription; it leaves only on success."""
        project, chosen = await self._chosen_letters(request)
        letters = DeadLetters(project.path)
        done, failed = [], []
        for entry in chosen:
            try:
                member = project.dispatcher.member(entry["subscriber"])
                await member.attempt(project, entry["originalEvent"], entry["retryCount"] + 2)
            except (HandlerError, NotFound) as exc:
                await asyncio.to_thread(letters.update, entry["id"], retryCount=entry["retryCount"] + 1)
                failed.append({"id": entry["id"], "error": str(exc)})
            else:
                done.append(entry["id"])
        await asyncio.to_thread(letters.remove, set(done))
        return Response.json({"succeeded": done, "failed": failed})

    async def purge_dead_letters(self, request: Request) -> Response:
        project, chosen = await self._chosen_letters(request)
        removed = await asyncio.to_thread(DeadLetters(project.path).remove, {e["id"] for e in chosen})
        return Response.json({"purged": removed})

    async def _chosen_letters(self, request: Request) -> tuple[Project, list[dict[str, Any]]]:
        """The dead letters a retry or purge names: ids, a subscription, or all."""
        body = json_object(request)
        ids, subscription = body.get("ids"), body.get("subscription")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise BadRequest("ids must be a list of dead-letter ids (strings)")
        if subscription is not None and not isinstance(subscription, str):
            raise BadRequest("subscription must be a subscription's name (a string)")
        project = await self.project(request)
        entries = await asyncio.to_thread(DeadLetters(project.path).entries, subscription)
        if ids:
            wanted = set(ids)
            missing = wanted - {e["id"] for e in entries}
            if missing:
                raise NotFound(f"no dead letter {sorted(missing)[0]}")
            return project, [e for e in entries if e["id"] in wanted]
        if body.get("all") or subscription:
            return project, entries
        raise BadRequest("name dead letters by ids, a subscription, or all")

    async def resend_webhooks(self, request: Request) -> Response:
        """`webhooks retry` ({"deliveryId"}); `webhooks redeliver` ({"endpoint", "since"}: failed ones)."""
        body = json_object(request)
        project = await self.project(request)
        if body.get("deliveryId"):
            rows = [
                r
                for r in await asyncio.to_thread(webhooks.deliveries, project.path)
                if r["deliveryId"] == body["deliveryId"]
            ]
            if not rows:
                raise NotFound(f"no delivery {body['deliveryId']}")
        elif body.get("endpoint"):
            since = parse_time(str(body["since"])) if body.get("since") else None
            rows = await asyncio.to_thread(
                webhooks.deliveries, project.path, str(body["endpoint"]), "failed", since
            )
        else:
            raise BadRequest("name a deliveryId, or an endpoint (and since)")
        return Response.json({"results": await webhooks.resend(project, rows)})

    async def replay(self, request: Request) -> Response:
        """Past events through a handler again; progress streamed as JSON lines, the summary last."""
        body = json_object(request)
        target = body.pop("target", None)
        if not isinstance(target, dict):
            raise BadRequest('name a target: {"subscription": NAME} | {"exec": [...]} | {"webhook": ID}')
        query = Query.from_params({key: str(value) for key, value in body.items() if value is not None})
        project = readable(await self.project(request))
        member = replay_mod.target_member(project, target)
        lines = project.log.matching(query, project.log.committed_sequence)

        async def progress() -> AsyncIterator[bytes]:
            async for step in replay_mod.run(project, query, member, lines):
                yield json.dumps(step.to_json()).encode() + b"\n"

        return Response(content_type=NDJSON, stream=progress())
