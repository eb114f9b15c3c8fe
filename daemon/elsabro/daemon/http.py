"""HTTP/1.1 over a stream, just enough for the daemon's socket: h11 does the framing.

HTTP lets the hook use `curl --unix-socket` as its client. Each connection reads
requests with a size limit and three deadlines, hands them to the app and writes the
response, keeping the connection alive between requests:

  idle    a client silent for `idle_timeout_s` is closed (between requests, or mid-request)
  head    the request line and headers must be whole within `header_timeout_s` of the
          connection's opening (its first request) or of the request's first byte: a
          client trickling a byte now and then is not kept forever
  body    the body must be whole within `body_timeout_s` of the head

A deadline passed mid-request is answered 408 and the connection closed. `authorize`, when
given, sees each request's head before any of its body is read (the TCP listener's token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from elsabro.core.errors import BadRequest, ElsabroError, PayloadTooLarge, RequestTimeout
from elsabro.core.jsonbody import parse_json
from elsabro.core.redact import scrub
from elsabro.core.settings import Settings

log = logging.getLogger("elsabro.http")

_READ_BYTES = 64 * 1024
_MAX_HEADER_BYTES = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    max_json_nodes: int = Settings.max_json_nodes

    def json(self) -> Any:
        """The body as JSON, with one clear error for each way it can be wrong."""
        return parse_json(self.body, self.max_json_nodes)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    # When set, the body is streamed chunk by chunk instead (`tail -f`).
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        # backslashreplace: a lone surrogate (a header's non-UTF-8 byte, decoded with
        # surrogateescape, named in an error message) raised UnicodeEncodeError here, out of
        # serve_connection, and the client got no answer at all. It can only sit inside a JSON
        # string, where `\udcff` is the valid escape for it.
        return cls(status, json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")

    @classmethod
    def error(cls, exc: ElsabroError) -> Response:
        # An error can quote its input (a URL, a value): redacted like everything that leaves.
        response = cls.json({"error": {"code": exc.code, "message": scrub(str(exc))}}, exc.http_status)
        if exc.http_status == 503:
            response.headers["Retry-After"] = "1"
        return response


App = Callable[[Request], Awaitable[Response]]
# Sees a request's head before its body is read; raises to refuse it (401, 413...).
Authorize = Callable[[Request], None]


@dataclass(frozen=True)
class _Limits:
    max_body_bytes: int
    idle_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float
    max_json_nodes: int
    authorize: Authorize | None


class _Closed(Exception):
    """The client went away or stalled; drop the connection quietly."""


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    app: App,
    *,
    max_body_bytes: int,
    idle_timeout_s: float,
    header_timeout_s: float = Settings.header_timeout_s,
    body_timeout_s: float = Settings.body_timeout_s,
    max_json_nodes: int = Settings.max_json_nodes,
    authorize: Authorize | None = None,
) -> None:
    limits = _Limits(
        max_body_bytes, idle_timeout_s, header_timeout_s, body_timeout_s, max_json_nodes, authorize
    )
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
    # The first request's head is due from the connection's opening: one that connects and
    # sends nothing holds its slot for `header_timeout_s`, not for `idle_timeout_s`.
    head_deadline: float | None = asyncio.get_running_loop().time() + header_timeout_s
    try:
        while True:
            try:
                request = await _read_request(conn, reader, limits, head_deadline)
            except ElsabroError as exc:
                await _send(conn, writer, reader, Response.error(exc))
                return
            if request is None:
                return
            try:
                response = await app(request)
            except ElsabroError as exc:
                response = Response.error(exc)
            await _send(conn, writer, reader, response)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            head_deadline = None  # a kept-alive connection: due from the next request's first byte
    except (_Closed, ConnectionError, h11.LocalProtocolError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, limits: _Limits, deadline: float | None
) -> Request | None:
    reading = _Reading(limits, deadline)
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(f"malformed HTTP request: {exc}") from None
        if event is h11.NEED_DATA:
            data = await reading.receive(conn, reader)
            if not data and reading.request is None and conn.their_state is h11.IDLE:
                return None  # a clean close between requests
        elif isinstance(event, h11.Request):
            reading.head(event)
        elif isinstance(event, h11.Data):
            reading.body += event.data
            if len(reading.body) > limits.max_body_bytes:
                raise PayloadTooLarge(f"request body over {limits.max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage) and reading.request is not None:
            reading.request.body = bytes(reading.body)
            return reading.request
        elif isinstance(event, h11.ConnectionClosed):
            raise _Closed


class _Reading:
    """One request being read: what has come of it, and by when the rest is due."""

    def __init__(self, limits: _Limits, deadline: float | None) -> None:
        self.limits = limits
        self.deadline = deadline  # None: due from the first byte
        self.started = False
        self.request: Request | None = None
        self.body = bytearray()

    def head(self, event: h11.Request) -> None:
        self.request = _start(event, self.limits)
        self.deadline = asyncio.get_running_loop().time() + self.limits.body_timeout_s

    async def receive(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        """Feed the next bytes to h11. A client silent for the idle timeout, or that sent nothing
        by the deadline, is closed quietly; one that sent part of a request too slowly gets 408."""
        loop = asyncio.get_running_loop()
        wait_s = self.limits.idle_timeout_s
        if self.deadline is not None:
            wait_s = max(min(wait_s, self.deadline - loop.time()), 0.0)
        try:
            data = await asyncio.wait_for(reader.read(_READ_BYTES), wait_s)
        except asyncio.TimeoutError:
            if self.started and self.deadline is not None and loop.time() >= self.deadline:
                part = "head" if self.request is None else "body"
                limit_s = self.limits.header_timeout_s if self.request is None else self.limits.body_timeout_s
                raise RequestTimeout(f"the request {part} did not arrive within {limit_s:g} s") from None
            raise _Closed from None
        if data and not self.started:
            self.started = True
            if self.deadline is None:
                self.deadline = loop.time() + self.limits.header_timeout_s
        conn.receive_data(data)
        return data


def _start(event: h11.Request, limits: _Limits) -> Request:
    """The request from its head alone: refused here, its body is never read."""
    headers = {
        name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape")
        for name, value in event.headers
    }
    target = urlsplit(event.target.decode("utf-8", "surrogateescape"))
    params = dict(parse_qsl(target.query, keep_blank_values=True))
    request = Request(event.method.decode("ascii", "replace"), unquote(target.path), params, headers)
    request.max_json_nodes = limits.max_json_nodes
    if limits.authorize is not None:
        limits.authorize(request)
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limits.max_body_bytes}")
    return request


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, response: Response
) -> None:
    headers = [("content-type", response.content_type), *response.headers.items()]
    if response.stream is None:
        headers.append(("content-length", str(len(response.body))))
    if conn.their_state is not h11.DONE:
        headers.append(("connection", "close"))  # an error before the whole request was read
    writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)) or b"")
    if response.stream is None:
        writer.write(conn.send(h11.Data(data=response.body)) or b"")
    else:
        await _stream(conn, writer, reader, response.stream)
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


async def _stream(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
    chunks: AsyncIterator[bytes],
) -> None:
    """Write chunks as they come until the source ends or the client hangs up."""
    hangup = asyncio.ensure_future(reader.read(1))
    try:
        iterator = chunks.__aiter__()
        while True:
            following = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({following, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if hangup in done:
                following.cancel()
                raise _Closed
            try:
                chunk = following.result()
            except StopAsyncIteration:
                return
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()
    finally:
        hangup.cancel()
