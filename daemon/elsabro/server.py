"""The daemon's routes: each request is parsed here and handed to the piece that does it.

    GET  /v1/status              pid, socket, uptime, projects served
    POST /v1/shutdown            graceful stop
    POST /v1/publish             one event            -> its stored record
    POST /v1/publish/batch       {"events": [...]}    -> {"events": [stored...]}, all or nothing
    POST /v1/hook                a raw Claude Code hook payload -> {}
    GET  /v1/events?topic=&since=&until=&correlation=&id=&after=&limit=[&follow=1]
                                 stored records as JSON Lines, oldest first; `follow`
                                 keeps the response open and streams new ones

Every project-scoped request names its project in the `Elsabro-Project` header.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import spool
from .errors import BadRequest, Busy, NotFound, StoreError
from .http import Request, Response
from .model import PublishRequest
from .projects import Project
from .query import Query

if TYPE_CHECKING:
    from .daemon import Daemon

PROJECT_HEADER = "elsabro-project"
MAX_BATCH_EVENTS = 10_000
NDJSON = "application/x-ndjson"

Handler = Callable[["Server", Request], Awaitable[Response]]


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line: `field.path: what is wrong`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_publish(value: Any) -> PublishRequest:
    if not isinstance(value, dict):
        raise BadRequest("an event must be a JSON object with at least a topic")
    try:
        return PublishRequest.model_validate(value)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


class Server:
    """Routes requests to the daemon's pieces."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/v1/status"): Server.status,
            ("POST", "/v1/shutdown"): Server.shutdown,
            ("POST", "/v1/publish"): Server.publish,
            ("POST", "/v1/publish/batch"): Server.publish_batch,
            ("GET", "/v1/events"): Server.events,
            ("POST", "/v1/hook"): Server.hook,
        }

    async def __call__(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            raise NotFound(f"no route {request.method} {request.path}")
        return await handler(self, request)

    async def project(self, request: Request) -> Project:
        return await self.daemon.projects.get(request.headers.get(PROJECT_HEADER))

    async def status(self, request: Request) -> Response:
        daemon = self.daemon
        return Response.json(
            {
                "pid": os.getpid(),
                "socket": str(daemon.settings.socket_path),
                "uptimeS": round(time.monotonic() - daemon.started_monotonic, 3),
                "projects": daemon.projects.served(),
                "version": daemon.version,
            }
        )

    async def shutdown(self, request: Request) -> Response:
        self.daemon.request_stop()
        return Response.json({"stopping": True})

    async def publish(self, request: Request) -> Response:
        spec = parse_publish(request.json())
        project = await self.project(request)
        [stored] = await project.log.append([spec.to_event()])
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
        stored = await project.log.append([spec.to_event() for spec in specs])
        return Response.json({"events": stored})

    async def hook(self, request: Request) -> Response:
        """A Claude Code hook payload, as the forwarder sends it: stored before the answer.

        The forwarder has given its payload away once the request is here, so the daemon
        owns the event: one it cannot store now is spooled (and drained later), and one
        that is not a hook payload is kept in `spool/rejected/`. Nothing is dropped.
        """
        project = await self.project(request)
        try:
            events = project.ingest.events(request.json())
        except BadRequest as exc:
            await asyncio.to_thread(spool.write, project.path, request.body, rejected=str(exc))
            raise
        try:
            await project.log.append(events)
        except (Busy, StoreError) as exc:
            await asyncio.to_thread(spool.write, project.path, request.body)
            return Response.json({"spooled": str(exc)}, 202)
        return Response.json({})

    async def events(self, request: Request) -> Response:
        query = Query.from_params(request.params)
        project = await self.project(request)
        if request.params.get("follow") in ("1", "true"):
            return Response(content_type=NDJSON, stream=follow(project, query))
        lines = await asyncio.to_thread(_select, project, query, project.log.committed_sequence)
        return Response(body=b"".join(line + b"\n" for line in lines), content_type=NDJSON)


def _select(project: Project, query: Query, upto: int) -> list[bytes]:
    return [line for line, _ in query.select(project.log.read(query.after_sequence, upto))]


async def follow(project: Project, query: Query) -> AsyncIterator[bytes]:
    """The matching backlog, then every new matching record as it is committed."""
    log = project.log
    last = log.committed_sequence
    for line in await asyncio.to_thread(_select, project, query, last):
        yield line + b"\n"
    live = replace(query, limit=None)
    while True:
        await log.wait_beyond(last)
        upto = log.committed_sequence
        lines = await asyncio.to_thread(_select, project, replace(live, after_sequence=last), upto)
        last = upto
        if lines:
            yield b"".join(line + b"\n" for line in lines)
