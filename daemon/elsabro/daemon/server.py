"""The daemon's routes: each request is parsed here and handed to the piece that does it.

    GET  /v1/status              pid, socket, uptime, projects served
    POST /v1/shutdown            graceful stop
    POST /v1/publish             one event            -> its stored record
    POST /v1/publish/batch       {"events": [...]}    -> {"events": [stored...]}, all or nothing
    POST /v1/hook                a raw Claude Code hook payload -> {} (once per Elsabro-Delivery id)
    POST /v1/cleanup             apply the retention policy now -> {"removed": {...} | null}
    POST /v1/replay              {topic, since, until, correlation, target} -> progress as JSON Lines
    POST /v1/subscribe           a subscriber of the Python API: attempts pushed as JSON Lines
    POST /v1/subscriptions/answer   {subscription, eventId, ok, error}: a pushed attempt's outcome
    POST /v1/unsubscribe         {subscription}: that subscriber leaves now
    GET  /v1/views/sessions|tasks|agents|stats   a projection's rows -> {"rows": [...]}
    GET  /v1/views/session?id=   one session's timeline -> {"rows": [...]}
    GET  /v1/events?topic=&since=&until=&correlation=&id=&causedBy=&after=&limit=[&follow=1]
                                 stored records as JSON Lines, oldest first; `follow`
                                 keeps the response open and streams new ones

Every project-scoped request names its project in the `Elsabro-Project` header.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from elsabro.config.schema import one_line
from elsabro.core.errors import (
    BadRequest,
    Busy,
    ConfigError,
    DiskFull,
    ElsabroError,
    LogInUse,
    NotFound,
    ProjectError,
    ProjectMoved,
    StoreError,
    WriteFailed,
)
from elsabro.core.model import PublishRequest
from elsabro.core.redact import Rules
from elsabro.daemon.delivery_routes import DeliveryRoutes
from elsabro.daemon.http import Request, Response
from elsabro.daemon.routes import NDJSON, PROJECT_HEADER, readable
from elsabro.ingest import spool
from elsabro.projects.project import Project, Projects, check_project_dir
from elsabro.store.query import Query
from elsabro.views.projections import PROJECTIONS
from elsabro.views.snapshots import rebuild, view
from elsabro.views.timeline import session_timeline

log = logging.getLogger("elsabro.daemon")

DELIVERY_HEADER = "elsabro-delivery"
MAX_BATCH_EVENTS = 10_000

Handler = Callable[["Server", Request], Awaitable[Response]]


def parse_publish(value: Any) -> PublishRequest:
    if not isinstance(value, dict):
        raise BadRequest("an event must be a JSON object with at least a topic")
    try:
        return PublishRequest.model_validate(value)
    except ValidationError as exc:
        raise BadRequest(one_line(exc)) from None


class Server(DeliveryRoutes):
    """Routes requests to the daemon's pieces."""

    def __init__(
        self, projects: Projects, status: Callable[[], dict[str, Any]], request_stop: Callable[[], None]
    ) -> None:
        # The daemon's own state comes in as callbacks: the routes never import the process.
        super().__init__(projects)
        self._status = status
        self._request_stop = request_stop
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/v1/status"): Server.status,
            ("POST", "/v1/shutdown"): Server.shutdown,
            ("POST", "/v1/publish"): Server.publish,
            ("POST", "/v1/publish/batch"): Server.publish_batch,
            ("GET", "/v1/events"): Server.events,
            ("POST", "/v1/hook"): Server.hook,
            ("GET", "/v1/subscriptions"): Server.subscriptions,
            ("POST", "/v1/subscriptions/test"): Server.test_subscription,
            ("POST", "/v1/ack"): Server.ack,
            ("POST", "/v1/subscribe"): Server.subscribe,
            ("POST", "/v1/subscriptions/answer"): Server.answer,
            ("POST", "/v1/unsubscribe"): Server.unsubscribe,
            ("GET", "/v1/deadletters"): Server.dead_letters,
            ("POST", "/v1/deadletters/retry"): Server.retry_dead_letters,
            ("POST", "/v1/deadletters/purge"): Server.purge_dead_letters,
            ("POST", "/v1/webhooks/resend"): Server.resend_webhooks,
            ("POST", "/v1/cleanup"): Server.cleanup,
            ("POST", "/v1/replay"): Server.replay,
            ("GET", "/v1/views/session"): Server.session_view,
            **{("GET", f"/v1/views/{name}"): Server.view for name in PROJECTIONS},
        }

    async def __call__(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            raise NotFound(f"no route {request.method} {request.path}")
        return await handler(self, request)

    async def status(self, request: Request) -> Response:
        return Response.json(self._status())

    async def shutdown(self, request: Request) -> Response:
        self._request_stop()
        return Response.json({"stopping": True})

    async def publish(self, request: Request) -> Response:
        spec = parse_publish(request.json())
        project = await self.project(request)
        [stored] = await self.append(request, project, [spec.to_event()])
        return Response.json(stored)

    async def publish_batch(self, request: Request) -> Response:
        body = request.json()
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise BadRequest('a batch is {"events": [...]} with at least one event')
        if len(items) > MAX_BATCH_EVENTS:
            raise BadRequest(f"a batch holds at most {MAX_BATCH_EVENTS} events, not {len(items)}")
        specs = []
        for index, item in enumerate(items):
            try:
                specs.append(parse_publish(item))
            except BadRequest as exc:
                raise BadRequest(f"events[{index}]: {exc}") from None
        project = await self.project(request)
        stored = await self.append(request, project, [spec.to_event() for spec in specs])
        return Response.json({"events": stored})

    async def hook(self, request: Request) -> Response:
        """A Claude Code hook payload, as the forwarder sends it: stored before the answer.

        The forwarder keeps a copy until it gets a 2xx answer, and names the delivery
        (`Elsabro-Delivery`, the name its spool file would get) so that it is stored at
        most once whichever way it comes. An event the daemon cannot store now is spooled
        (and drained later), and one that is not a hook payload is kept in `spool/rejected/`.
        Once the event is in one of those places, the daemon removes the forwarder's copy
        (it saves the forwarder a process per event).
        """
        delivery = spool.delivery_id(request.headers.get(DELIVERY_HEADER))
        raw = request.headers.get(PROJECT_HEADER)
        try:
            project = await self.project(request)
        except (LogInUse, ConfigError) as exc:
            # An embedded bus writes the log now, or the config names no store we can open:
            # the spool keeps the event until the project opens.
            path = check_project_dir(raw)
            response = await _spool(path, request.body, delivery, exc)
            await asyncio.to_thread(spool.drop_hook_copy, path, delivery)
            return response
        except ProjectError as exc:
            if raw and os.path.isabs(raw) and not os.path.lexists(raw):
                # No directory, so no project to keep it for: creating one would make a project
                # out of a path that is gone (a repo removed mid-session). Answered, so the hook
                # does not spool it into a directory it would have to create either.
                log.warning("hook event for %s dropped: the directory does not exist", raw)
                return Response.json({"dropped": str(exc)}, 202)
            raise
        try:
            payload = request.json()
            await project.ingest.session_started(payload)
            try:
                stored = await project.drainer.deliver(payload, delivery)
            except ProjectMoved:  # replaced meanwhile, nothing reached the old files: the new one
                project = await self.project(request)
                stored = await project.drainer.deliver(payload, delivery)
        except BadRequest as exc:
            await asyncio.to_thread(
                spool.write,
                project.path,
                request.body,
                rejected=str(exc),
                delivery=delivery,
                rules=project.log.rules,
            )
            await asyncio.to_thread(spool.drop_hook_copy, project.path, delivery)
            raise
        except (Busy, StoreError) as exc:
            response = await _spool(project.path, request.body, delivery, exc, project.log.rules)
        else:
            response = Response.json({} if stored else {"duplicate": delivery})
        await asyncio.to_thread(spool.drop_hook_copy, project.path, delivery)
        return response

    async def events(self, request: Request) -> Response:
        query = Query.from_params(request.params)
        if request.params.get("follow") in ("1", "true"):  # waits for events to come: opens the project
            return Response(content_type=NDJSON, stream=follow(readable(await self.project(request)), query))
        project = await self.existing(request)
        if project is None:
            return Response(body=b"", content_type=NDJSON)
        upto = project.log.committed_sequence
        if query.limit is not None or query.event_id is not None:  # a few records: one body
            lines = await asyncio.to_thread(project.log.select, query, upto)
            return Response(body=b"".join(line + b"\n" for line in lines), content_type=NDJSON)
        # Possibly the whole log: streamed, never held in memory at once.
        return Response(content_type=NDJSON, stream=_in_thread(project.log.matching(query, upto)))

    async def cleanup(self, request: Request) -> Response:
        """Apply the project's retention policy now."""
        project = await self.project(request)
        policy = project.config.events.store.retention
        if policy.max_events is None and policy.max_age is None:
            if project.untrusted:  # the project's own policy waits for trust
                raise BadRequest(f"no retention policy in force: {project.untrusted}")
            raise BadRequest("no retention policy: set events.store.retention.maxEvents or maxAge")
        removal = await project.apply_retention()
        return Response.json({"removed": removal.to_json() if removal else None})

    async def view(self, request: Request) -> Response:
        """A projection's rows, resumed from its snapshot (`elsabro sessions|tasks|agents|stats`)."""
        name = request.path.rsplit("/", 1)[1]
        project = await self.existing(request)
        if project is None:
            return Response.json({"rows": rebuild(name, iter(()))})
        snapshots = project.config.events.store.snapshots
        read = project.log.read
        if snapshots.enabled:
            where = project.path / ".elsabro" / "views"
            rows = await asyncio.to_thread(view, name, read, where, snapshots.frequency)
        else:
            rows = await asyncio.to_thread(lambda: rebuild(name, (line for _, line in read())))
        return Response.json({"rows": rows})

    async def session_view(self, request: Request) -> Response:
        """The timeline of one session (`elsabro session ID`), from its events alone."""
        session_id = request.params.get("id")
        if not session_id:
            raise BadRequest("name the session: ?id=SESSION_ID")
        project = await self.existing(request)
        query = Query(correlation_id=session_id)
        upto = project.log.committed_sequence if project is not None else 0
        records = (
            await asyncio.to_thread(lambda: [json.loads(line) for line in project.log.matching(query, upto)])
            if project is not None
            else []
        )
        if not records:
            raise NotFound(f"no events of session {session_id}")
        return Response.json({"rows": session_timeline(records)})


async def _spool(
    project: Path, body: bytes, delivery: str | None, why: ElsabroError, rules: Rules | None = None
) -> Response:
    """Spool a hook payload the log cannot take now, redacted by the project's rules when it is
    open; if even that fails, say so (the hook keeps it)."""
    try:
        await asyncio.to_thread(spool.write, project, body, delivery=delivery, rules=rules)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise (DiskFull if full else WriteFailed)(
            f"{why}; spooling it failed too: {exc.strerror or exc}"
        ) from None
    return Response.json({"spooled": str(why)}, 202)


async def _in_thread(lines: Iterator[bytes], batch: int = 2_000) -> AsyncIterator[bytes]:
    """Chunks of a blocking iterator's lines, each batch read in a worker thread."""

    def take() -> list[bytes]:
        return list(islice(lines, batch))

    while chunk := await asyncio.to_thread(take):
        yield b"".join(line + b"\n" for line in chunk)


async def follow(project: Project, query: Query) -> AsyncIterator[bytes]:
    """The matching backlog, then every new matching record as it is committed."""
    log = project.log
    last = log.committed_sequence
    for line in await asyncio.to_thread(log.select, query, last):
        yield line + b"\n"
    live = replace(query, limit=None)
    while True:
        await log.wait_beyond(last)
        if log.closing and log.committed_sequence <= last:
            return  # the project was closed (replaced, or the daemon stops): the stream ends
        upto = log.committed_sequence
        lines = await asyncio.to_thread(log.select, replace(live, after_sequence=last), upto)
        last = upto
        if lines:
            yield b"".join(line + b"\n" for line in lines)
