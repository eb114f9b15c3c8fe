"""The EventBus as a client of the daemon: requests and pushed attempts over the socket.

Publishing and queries are plain requests (httpx over the Unix socket). Each
subscription holds one streamed `POST /v1/subscribe` response (delivery/pushed.py) and answers
every attempt the daemon pushes. When the daemon goes away (restart, crash) the stream
ends and the subscription reconnects by itself, backing off from 50 ms to 1 s, and
starts the daemon again if none answers, as any CLI command would (unless the bus was
made with start_daemon=False). A durable subscription resumes from its saved cursor,
any other one after the last event it was given. What may be delivered twice after a
reconnect:

- a durable subscription: the event in flight when the daemon stopped, plus, after a
  crash, the events handled in the second before it (cursors are checkpointed every
  second and at shutdown);
- any other subscription: the event in flight when the connection broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx

from elsabro.bus.subscriber import Subscriber
from elsabro.core.errors import DaemonError, DaemonNotRunning, ElsabroError, HandlerError, NotFound
from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.daemon.client import PROJECT_HEADER, check_socket_file, ensure_daemon, error_from, error_of
from elsabro.store.query import Query

log = logging.getLogger("elsabro.bus")

RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 1.0
REQUEST_TIMEOUT_S = 30.0


class ClientBackend:
    """What the bus calls in client mode."""

    def __init__(self, settings: Settings, project: str, start_daemon: bool) -> None:
        self.settings = settings
        self.project = project
        self.start_daemon = start_daemon
        self._http: httpx.AsyncClient | None = None
        self._follows: dict[str, asyncio.Task[None]] = {}
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        if self.start_daemon:
            await self._revive()
        check_socket_file(self.settings.socket_path)  # never talk to another user's socket
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.settings.socket_path)),
            base_url="http://elsabro",
            headers={PROJECT_HEADER: self.project},
            timeout=REQUEST_TIMEOUT_S,
            # A fresh connection per request (free on a Unix socket: 1.51 ms against 1.54 ms per
            # publish). A daemon gone between two requests is then a refused connect, safe to
            # retry after starting it; a kept-alive connection would fail mid-request instead,
            # where a retry could store an event twice.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise DaemonError("the bus is not started: use `async with` or `await bus.start()`")
        return self._http

    async def close(self) -> None:
        await asyncio.gather(*(_end(task) for task in self._follows.values()))
        self._follows.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> bytes:
        try:
            return await self._request(method, path, body, params)
        except DaemonNotRunning:
            if not self.start_daemon:
                raise
            await self._revive()  # as the CLI does: a call that finds no daemon starts one
            return await self._request(method, path, body, params)

    async def _request(self, method: str, path: str, body: Any, params: dict[str, str] | None) -> bytes:
        try:
            response = await self.http.request(method, path, json=body, params=params)
        except httpx.ConnectError:
            raise DaemonNotRunning(f"no elsabro daemon on {self.settings.socket_path}") from None
        except httpx.TransportError as exc:
            raise DaemonError(f"talking to the daemon failed: {exc!r}") from None
        if response.status_code >= 300:
            raise error_from(response.status_code, response.content)
        return response.content

    async def _revive(self) -> None:
        """Start the daemon if none answers; one start at a time for all of this bus's tasks."""
        async with self._starting:
            await asyncio.to_thread(partial(ensure_daemon, self.settings, detached=True))

    async def append(self, events: list[PublishRequest]) -> list[dict[str, Any]]:
        wire = [event.model_dump(by_alias=True, exclude_none=True) for event in events]
        body = await self._call("POST", "/v1/publish/batch", {"events": wire})
        stored: list[dict[str, Any]] = json.loads(body)["events"]
        return stored

    async def select(self, query: Query) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/events", params=query.to_params())
        return [json.loads(line) for line in body.splitlines()]

    async def ack(self, subscriber: Subscriber, event_id: str, ok: bool) -> None:
        await self._call(
            "POST", "/v1/ack", {"subscription": subscriber.selection.name, "eventId": event_id, "ok": ok}
        )

    async def dead_letters(self, subscription: str | None) -> list[dict[str, Any]]:
        params = {"subscription": subscription} if subscription else None
        letters: list[dict[str, Any]] = json.loads(await self._call("GET", "/v1/deadletters", params=params))[
            "deadLetters"
        ]
        return letters

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(self, subscriber: Subscriber, after: int | None = None) -> None:
        """Subscribe, and return once the daemon has the subscriber (or raise its refusal)."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(self._follow(subscriber, ready, after))
        self._follows[subscriber.id] = task
        try:
            await ready
        except BaseException:
            self._follows.pop(subscriber.id, None)
            task.cancel()
            raise

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        task = self._follows.pop(subscriber.id, None)
        if task is None:
            return
        await _end(task)
        # The daemon would notice the closed stream too, but later: make it leave now. It may
        # be gone, or have seen the stream end already.
        with contextlib.suppress(DaemonError, NotFound):
            await self._call("POST", "/v1/unsubscribe", {"subscription": subscriber.selection.name})

    async def _follow(self, subscriber: Subscriber, ready: asyncio.Future[None], after: int | None) -> None:
        """The subscription's life: connected, handling pushes; reconnecting when the daemon goes."""
        delay_s = RECONNECT_MIN_S
        while True:
            try:
                async for message in self._pushes(subscriber, after):
                    if "subscribed" in message:
                        after = message["subscribed"]["cursor"] if after is None else after
                        delay_s = RECONNECT_MIN_S
                        if not ready.done():
                            ready.set_result(None)
                        continue
                    after = message["event"]["sequence"] - 1  # one in flight: all before it is done
                    await self._attempt(subscriber, message["event"])
            except Exception as exc:  # anything but a cancel: a durable subscription must not just end
                if not ready.done():  # the first subscribe: the caller hears why
                    ready.set_exception(exc if isinstance(exc, ElsabroError) else DaemonError(str(exc)))
                    return
                expected = isinstance(exc, (ElsabroError, httpx.TransportError, ValueError))
                log.log(
                    logging.INFO if expected else logging.WARNING,
                    "%s: reconnecting (%s: %s)",
                    subscriber.selection.name,
                    type(exc).__name__,
                    exc,
                )
                if isinstance(exc, DaemonNotRunning) and self.start_daemon:
                    with contextlib.suppress(DaemonError):  # it failed to start: try again later
                        await self._revive()
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    async def _pushes(self, subscriber: Subscriber, after: int | None) -> AsyncIterator[dict[str, Any]]:
        """The messages of one subscribe response, until it ends."""
        body = {**subscriber.selection.model_dump(by_alias=True), "after": after}
        try:
            async with self.http.stream("POST", "/v1/subscribe", json=body, timeout=None) as response:
                if response.status_code >= 300:
                    raise error_from(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise error_of(message["error"])
                    yield message
        except httpx.ConnectError:
            raise DaemonNotRunning(f"no elsabro daemon on {self.settings.socket_path}") from None
        raise DaemonError("the daemon ended the subscription")  # it stopped: reconnect

    async def _attempt(self, subscriber: Subscriber, record: dict[str, Any]) -> None:
        """Run the handler on one pushed attempt and tell the daemon how it went."""
        answer: dict[str, Any] = {"subscription": subscriber.selection.name, "eventId": record["id"]}
        try:
            await subscriber.handle(record)
            answer["ok"] = True
        except HandlerError as exc:
            answer.update(ok=False, error=str(exc), detail=exc.detail)
        try:
            await self._call("POST", "/v1/subscriptions/answer", answer)
        except ElsabroError as exc:  # the daemon went away or gave up waiting: it will push it again
            log.info("%s: answer for %s not taken: %s", subscriber.selection.name, record["id"], exc)


async def _end(task: asyncio.Task[None]) -> None:
    """Cancel a subscription's task and wait for it to end.

    Cancelled once, the task may go on: httpcore finishes a request in flight (an answer)
    inside a shielded scope and swallows the cancellation, then the task would wait on its
    stream for good. So it is cancelled again until it ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
