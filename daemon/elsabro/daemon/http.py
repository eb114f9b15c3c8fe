"""HTTP/1.1 over a stream, just enough for the daemon's socket: h11 does the framing.

HTTP lets the hook use `curl --unix-socket` as its client. Each connection reads
requests with a size limit and an idle deadline (a client that connects and stalls, or
sends half a request, is closed, never waited on forever), hands them to the app and
writes the response, keeping the connection alive between requests.
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

from elsabro.core.errors import BadRequest, ElsabroError, PayloadTooLarge
from elsabro.core.jsonbody import parse_json
from elsabro.core.redact import scrub

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

    def json(self) -> Any:
        """The body as JSON, with one clear error for each way it can be wrong."""
        return parse_json(self.body)


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


class _Closed(Exception):
    """The client went away or stalled; drop the connection quietly."""


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    app: App,
    *,
    max_body_bytes: int,
    idle_timeout_s: float,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
    try:
        while True:
            try:
                request = await _read_request(conn, reader, max_body_bytes, idle_timeout_s)
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
    except (_Closed, ConnectionError, h11.LocalProtocolError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, max_body_bytes: int, idle_timeout_s: float
) -> Request | None:
    request: Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(f"malformed HTTP request: {exc}") from None
        if event is h11.NEED_DATA:
            if (
                not await _receive(conn, reader, idle_timeout_s)
                and request is None
                and conn.their_state is h11.IDLE
            ):
                return None  # a clean close between requests
        elif isinstance(event, h11.Request):
            request = _start(event, max_body_bytes)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body_bytes:
                raise PayloadTooLarge(f"request body over {max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            request.body = bytes(body)
            return request
        elif isinstance(event, h11.ConnectionClosed):
            raise _Closed


async def _receive(conn: h11.Connection, reader: asyncio.StreamReader, idle_timeout_s: float) -> bytes:
    """Feed the next bytes to h11; a client silent for `idle_timeout_s` is dropped."""
    try:
        data = await asyncio.wait_for(reader.read(_READ_BYTES), idle_timeout_s)
    except asyncio.TimeoutError:
        raise _Closed from None
    conn.receive_data(data)
    return data


def _start(event: h11.Request, max_body_bytes: int) -> Request:
    headers = {
        name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape")
        for name, value in event.headers
    }
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {max_body_bytes}")
    target = urlsplit(event.target.decode("utf-8", "surrogateescape"))
    params = dict(parse_qsl(target.query, keep_blank_values=True))
    return Request(event.method.decode("ascii", "replace"), unquote(target.path), params, headers)


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
