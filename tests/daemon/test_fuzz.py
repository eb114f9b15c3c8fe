"""Property-based fuzzing of the daemon's input edges, with a bounded budget.

Each property runs a fixed number of derandomized examples (`budget`), so this file runs
the same examples every time and stays well under 30 s on two cores:

1. the HTTP layer (http.py), in-process on an asyncio StreamReader: arbitrary bytes,
   valid requests (which must come out exactly as they went in), structured mutations of
   valid requests, stalled clients, the JSON body; then a real daemon over its socket;
2. topic matching (topics.py) against two independent reference matchers, and the
   topic/pattern grammar against an independent regex;
3. the config loader (config.py): arbitrary documents and text, filter strings, and
   compiled filters evaluated on arbitrary events;
4. the publish body (server.parse_publish).

A `FOUND BUG` comment marks where a strategy leaves out an input that once broke elsabro
outside http.py and topics.py; each such bug has its own reproducer at the end
(`test_found_bug`, `test_found_daemon_bug`), which now must pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import socket
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jmespath
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from jmespath.exceptions import JMESPathError

from elsabro.config import files as config_mod
from elsabro.config.schema import ProjectConfig, Subscription
from elsabro.core.errors import BY_CODE, BadRequest, ConfigError, NotFound, UsageError
from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.core.topics import MAX_TOPIC_CHARS, check_pattern, check_topic, matches
from elsabro.daemon.http import Request, Response, serve_connection
from elsabro.daemon.server import parse_publish
from elsabro.delivery.members import FAILED_TOPIC, SubscriptionMember
from support import DaemonProcess, World

# jmespath still accepts the old `foo` string literal (JEP-12) with a PendingDeprecationWarning;
# the daemon runs with the default filters, which ignore it, and so do these tests.
pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated string literal syntax:PendingDeprecationWarning"),
    # Printing a failing example of 200 KiB warns; the failure itself is what matters.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]


def budget(examples: int) -> Callable[[Any], Any]:
    """A fixed, reproducible number of examples; no deadline (the host is shared and noisy)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- JSON values ---------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    # FOUND BUG (dispatch.py): an infinite number makes `floor`/`ceil` in a filter raise.
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


PUBLISH_FIELDS = ["topic", "payload", "type", "source", "correlationId", "causationId", "metadata"]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


# == 1. HTTP ==================================================================================

MAX_BODY = 256 * 1024
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade", "te"}


class _Writer:
    """The part of asyncio.StreamWriter that serve_connection uses, collecting the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


class _EchoApp:
    """Stands in for the routes: GET and POST answer 200 with what was parsed (the body through
    Request.json, as every route reads it); other methods are NotFound, as in the real server."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        if request.method not in ("GET", "POST"):
            raise NotFound(f"no route {request.method} {request.path}")
        body = request.json() if request.method == "POST" else None
        return Response.json(
            {
                "path": request.path,
                "params": request.params,
                "headers": request.headers,
                "bodyType": type(body).__name__,
            }
        )


@dataclass
class _Served:
    app: _EchoApp
    writer: _Writer
    elapsed_s: float


def _serve(data: bytes, *, eof: bool = True, idle_timeout_s: float = 5.0) -> _Served:
    """Run one connection that sends `data` (then EOF, or then silence) through serve_connection."""

    async def run() -> _Served:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        app, writer = _EchoApp(), _Writer()
        started = time.monotonic()
        # Never hangs: with EOF every read returns at once, without it the idle timeout fires.
        await asyncio.wait_for(
            serve_connection(
                reader,
                writer,  # type: ignore[arg-type]
                app,
                max_body_bytes=MAX_BODY,
                idle_timeout_s=idle_timeout_s,
            ),
            timeout=idle_timeout_s + 2,
        )
        return _Served(app, writer, time.monotonic() - started)

    return asyncio.run(run())


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _answers(data: bytes, requests: list[Request], *, cut_ok: bool = False) -> list[_Answer]:
    """Split what the server wrote into well-formed HTTP/1.1 responses (or fail); with `cut_ok`,
    a streamed body may end early (the server took the client's half-close for a hang-up)."""
    found: list[_Answer] = []
    rest = bytes(data)
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"an incomplete response head: {head[:200]!r}"
        status_line, *lines = head.split(b"\r\n")
        match = re.fullmatch(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*", status_line)
        assert match, f"a malformed status line: {status_line!r}"
        headers = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            assert colon and name, f"a malformed response header: {line!r}"
            headers[name.decode().lower()] = value.strip().decode()
        if len(found) < len(requests) and requests[len(found)].method == "HEAD":
            body = b""  # a response to HEAD carries the length of the body it does not send
        elif headers.get("transfer-encoding") == "chunked":
            body, rest = _dechunk(rest, cut_ok)
        else:
            length = int(headers["content-length"])
            body, rest = rest[:length], rest[length:]
            assert len(body) == length, f"a body cut short: {len(body)} of {length} bytes"
        found.append(_Answer(int(match.group(1)), headers, body))
    return found


def _dechunk(data: bytes, cut_ok: bool) -> tuple[bytes, bytes]:
    """(body, what follows it) of a chunked body."""
    body = bytearray()
    while True:
        if cut_ok and not data:
            return bytes(body), b""
        size_line, sep, data = data.partition(b"\r\n")
        assert sep and re.fullmatch(rb"[0-9A-Fa-f]+", size_line), f"a malformed chunk: {size_line[:50]!r}"
        size = int(size_line, 16)
        if size == 0:
            assert data.startswith(b"\r\n"), "a chunked body without its end"
            return bytes(body), data[2:]
        assert data[size : size + 2] == b"\r\n", "a chunk cut short"
        body += data[:size]
        data = data[size + 2 :]


def _check_error(answer: _Answer) -> None:
    """An error answer is elsabro's own: a 4xx whose code names the class with that status."""
    assert 400 <= answer.status < 500, f"status {answer.status}: {answer.body[:300]!r}"
    error = json.loads(answer.body)["error"]
    assert BY_CODE[error["code"]].http_status == answer.status, error
    assert isinstance(error["message"], str) and error["message"], error


def _check_connection(served: _Served) -> list[_Answer]:
    """The properties every connection has, whatever the client sent."""
    app, writer = served.app, served.writer
    assert writer.closed, "the connection was left open"
    for request in app.seen:  # each request the parser yielded is well-formed
        assert isinstance(request.method, str) and request.method and " " not in request.method
        assert isinstance(request.path, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in request.params.items())
        assert all(k == k.lower() and isinstance(v, str) for k, v in request.headers.items())
        assert isinstance(request.body, bytes) and len(request.body) <= MAX_BODY
    answers = _answers(writer.data, app.seen)
    # One answer per request handed to the app, plus at most one refusal of what came after.
    assert len(app.seen) <= len(answers) <= len(app.seen) + 1, (len(app.seen), len(answers))
    for index, answer in enumerate(answers):
        if index < len(app.seen) and app.seen[index].method == "HEAD":
            assert answer.status == 404 and answer.body == b""  # no route; h11 sends no body
        elif index >= len(app.seen):  # the refusal: a 4xx, and the connection closes after it
            _check_error(answer)
            assert answer.headers.get("connection") == "close"
        elif answer.status == 200:
            echoed = json.loads(answer.body)
            request = app.seen[index]
            # What the app answered round-trips, whatever bytes the strings came from.
            assert echoed["path"] == request.path
            assert echoed["params"] == request.params
            assert echoed["headers"] == request.headers
        else:
            _check_error(answer)
    return answers


@dataclass
class _Raw:
    """A request as parts, so mutations can break one part and render the rest correctly."""

    method: bytes = b"GET"
    target: bytes = b"/"
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"Host", b"x")])
    body: bytes = b""
    chunks: list[bytes] | None = None  # chunked framing when set
    line: bytes | None = None  # replaces the request line
    framing: bool = True  # add Content-Length / Transfer-Encoding

    def render(self) -> bytes:
        line = self.line if self.line is not None else self.method + b" " + self.target + b" HTTP/1.1"
        headers = list(self.headers)
        payload = self.body
        if self.chunks is not None:
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in self.chunks if c) + b"0\r\n\r\n"
            if self.framing:
                headers.append((b"Transfer-Encoding", b"chunked"))
        elif self.framing:
            headers.append((b"Content-Length", str(len(self.body)).encode()))
        head = line + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return head + b"\r\n" + payload


@dataclass
class _Spec:
    """A valid request and what the parser must make of it."""

    raw: _Raw
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


header_names = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12).filter(
    lambda name: name.lower() not in RESERVED_HEADERS
)
# Any text without control characters; sent as UTF-8 (h11 takes bytes 0x80-0xff in values).
header_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=24)
path_segments = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@st.composite
def _split(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    edges = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def valid_requests(draw: st.DrawFn, bodies: st.SearchStrategy[Any] = json_values) -> _Spec:
    method = draw(st.sampled_from(["GET", "POST"]))
    segments = draw(st.lists(path_segments, max_size=4))
    path = "/" + "/".join(segments)
    params = draw(st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=6), max_size=3))
    target = "/" + "/".join(quote(s, safe="") for s in segments)
    if params:
        target += "?" + urlencode(params)
    names = draw(st.lists(header_names, max_size=4, unique_by=str.lower))
    custom = [(name, draw(header_values)) for name in names]
    body = _dumps(draw(bodies)) if method == "POST" else b""
    chunked = bool(body) and draw(st.booleans())
    raw = _Raw(
        method.encode(),
        target.encode(),
        [(b"Host", b"x")] + [(n.encode(), v.encode()) for n, v in custom],
        body,
        draw(_split(body)) if chunked else None,
    )
    headers = {"host": "x", **{n.lower(): v.strip(" \t") for n, v in custom}}
    headers.update({"transfer-encoding": "chunked"} if chunked else {"content-length": str(len(body))})
    return _Spec(raw, method, path, params, headers, body)


def _insert(data: bytes, at: int, piece: bytes) -> bytes:
    at = min(at, len(data))
    return data[:at] + piece + data[at:]


BAD_REQUEST_LINES = [
    *(b"", b"GET", b"GET /", b"GET / HTTP/1.1 extra", b"GET / HTTP/2.0", b"GET / HTTP/1.10"),
    *(b"GET / HTTP/1.1\x00", b"G ET / HTTP/1.1", b"GET  /  HTTP/1.1", b"\x16\x03\x01\x02\x00\x01"),
    *(b"GET http://x/y?a=b HTTP/1.1", b"GET * HTTP/1.1", b"GET //v1//status HTTP/1.1", b"PRI * HTTP/2.0"),
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1",
]
HTTP_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/9.9", b"http/1.1", b""]
BAD_LENGTHS = [b"-1", b"abc", b"1e3", b"9" * 25, b"9" * 5_000, b"5, 6", b"", b" ", b"+5", b"0x10", b"1_0"]
BAD_CHUNKED = [
    *(b"zz\r\nab\r\n0\r\n\r\n", b"f" * 30 + b"\r\n", b"5\r\nab\r\n0\r\n\r\n", b"2\r\nab0\r\n\r\n"),
    *(b"2;ext=1\r\nab\r\n0\r\n\r\n", b"2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n", b"-2\r\nab\r\n0\r\n\r\n"),
    *(b"ffffffff\r\n" + b"a" * 100, b"2\nab\n0\n\n"),
]
ODD_BODIES = [
    # Lone surrogates: as JSON escapes, and encoded in the body (invalid UTF-8).
    *(b'"\\ud800"', b'"\\udcff"', b'{"topic":"a.b","payload":"x\\udfff"}', b'{"\\ud83d":1}'),
    *(b'"\xed\xa0\x80"', b'"\xed\xbf\xbf"', '"\ud83d\ude00 ok"'.encode("utf-16", "surrogatepass")),
    # Not standard JSON, or not JSON at all.
    *(b"NaN", b"[Infinity]", b"-Infinity", b"1e999", b"9" * 5_000, b"\xef\xbb\xbf{}", b"{'a': 1}"),
    *(b"", b" ", b"{", b"[1,]", b'{"a" 1}', b"\x00", b"01", b"tru"),
]
# Each mutation changes `raw` in place, or returns the finished bytes.
Mutation = Callable[[st.DrawFn, _Raw, int], "bytes | None"]


def _request_line(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    parts = st.tuples(st.binary(max_size=8), st.binary(max_size=12), st.sampled_from(HTTP_VERSIONS))
    raw.line = draw(st.sampled_from(BAD_REQUEST_LINES) | parts.map(b" ".join))


def _huge_header(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    raw.headers.append((b"X-Big", b"a" * draw(st.integers(1_000, 200_000))))


def _many_headers(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    raw.headers.extend([(b"X-N", b"v")] * draw(st.integers(100, 20_000)))


def _content_length(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    raw.chunks, raw.framing = None, False
    near = [str(len(raw.body) + delta).encode() for delta in range(-3, 4) if len(raw.body) + delta >= 0]
    values = st.sampled_from([*BAD_LENGTHS, *near, b"%d, %d" % (len(raw.body), len(raw.body))])
    raw.headers.extend((b"Content-Length", value) for value in draw(st.lists(values, min_size=1, max_size=2)))


def _chunked_garbage(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    encoding = draw(st.sampled_from([b"chunked", b"gzip, chunked", b"x"]))
    raw.headers.append((b"Transfer-Encoding", encoding))
    raw.chunks, raw.framing = None, False
    raw.body = draw(st.binary(max_size=64) | st.sampled_from(BAD_CHUNKED))


def _both_framings(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    raw.headers.append((b"Content-Length", str(len(raw.body) + 1).encode()))
    raw.chunks = draw(_split(raw.body))


def _truncate(draw: st.DrawFn, raw: _Raw, max_depth: int) -> bytes:
    rendered = raw.render()
    return rendered[: draw(st.integers(0, len(rendered) - 1))]


def _post(raw: _Raw, body: bytes) -> None:
    raw.method, raw.body, raw.chunks, raw.line = b"POST", body, None, None


def _invalid_utf8(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    piece = draw(st.binary(min_size=1, max_size=4).filter(lambda b: any(x >= 0x80 for x in b)))
    _post(raw, _insert(raw.body, draw(st.integers(0, len(raw.body))), piece))


def _deep_json(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    depth = draw(st.integers(1, max_depth))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"a":[', b"]}")]))
    missing = draw(st.integers(0, 1))  # unbalanced too
    _post(raw, opener * depth + b"1" + closer * (depth - missing))


def _odd_body(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    _post(raw, draw(st.sampled_from(ODD_BODIES)))


def _odd_header(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    """A header value that is not UTF-8 (h11 takes bytes 0x80-0xff): it reaches the app."""
    value = draw(st.binary(min_size=1, max_size=6).map(lambda b: bytes(x | 0x80 for x in b)))
    raw.headers.append((draw(st.sampled_from([b"X-Odd", b"Elsabro-Project"])), b"/" + value))


def _control_char(draw: st.DrawFn, raw: _Raw, max_depth: int) -> bytes:
    rendered = raw.render()
    byte = draw(st.sampled_from([*range(0x00, 0x20), 0x7F]))
    return _insert(rendered, draw(st.integers(0, len(rendered))), bytes([byte]))


def _flip(draw: st.DrawFn, raw: _Raw, max_depth: int) -> bytes:
    rendered = bytearray(raw.render())
    for _ in range(draw(st.integers(1, 3))):
        rendered[draw(st.integers(0, len(rendered) - 1))] = draw(st.integers(0, 255))
    return bytes(rendered)


def _oversize(draw: st.DrawFn, raw: _Raw, max_depth: int) -> None:
    _post(raw, b"x" * (MAX_BODY + draw(st.integers(1, 1_000))))
    raw.chunks = draw(_split(raw.body)) if draw(st.booleans()) else None


MUTATIONS: dict[str, Mutation] = {
    "request_line": _request_line,
    "huge_header": _huge_header,
    "odd_header": _odd_header,
    "many_headers": _many_headers,
    "content_length": _content_length,
    "chunked_garbage": _chunked_garbage,
    "both_framings": _both_framings,
    "truncate": _truncate,
    "invalid_utf8": _invalid_utf8,
    "deep_json": _deep_json,
    "odd_body": _odd_body,
    "control_char": _control_char,
    "flip": _flip,
    "oversize": _oversize,
}


@st.composite
def mutated_requests(
    draw: st.DrawFn, base: _Raw | None = None, *, max_depth: int = 100_000, oversize: bool = True
) -> bytes:
    """A valid request (`base`, or a drawn one) broken in one or two of the ways a client can get it wrong."""
    raw = base if base is not None else draw(valid_requests()).raw
    names = [name for name in MUTATIONS if oversize or name != "oversize"]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
        finished = MUTATIONS[name](draw, raw, max_depth)
        if finished is not None:
            return finished
    return raw.render()


@budget(300)
@given(data=st.binary(max_size=2_000))
def test_http_arbitrary_bytes(data: bytes) -> None:
    _check_connection(_serve(data))


@budget(150)
@given(data=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3).map(b"".join))
def test_http_arbitrary_bytes_after_a_valid_request(data: bytes) -> None:
    """Garbage after a complete request on a kept-alive connection."""
    first = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
    served = _serve(first + data)
    answers = _check_connection(served)
    assert served.app.seen[0].path == "/v1/status" and answers[0].status == 200


@budget(120)
@given(specs=st.lists(valid_requests(), min_size=1, max_size=3))
def test_http_valid_requests_come_out_as_they_went_in(specs: list[_Spec]) -> None:
    """Pipelined on one connection, each valid request reaches the app exactly as it was sent."""
    served = _serve(b"".join(spec.raw.render() for spec in specs))
    answers = _check_connection(served)
    assert len(served.app.seen) == len(specs) == len(answers)
    for spec, request, answer in zip(specs, served.app.seen, answers, strict=True):
        assert (request.method, request.path, request.params) == (spec.method, spec.path, spec.params)
        assert request.headers == spec.headers
        assert request.body == spec.body
        assert answer.status == 200


@budget(250)
@given(data=mutated_requests())
def test_http_mutated_requests(data: bytes) -> None:
    _check_connection(_serve(data))


@budget(20)
@given(spec=valid_requests(), cut=st.floats(0, 1, exclude_max=True))
def test_http_stalled_client_is_dropped(spec: _Spec, cut: float) -> None:
    """Half a request and then silence: dropped at the idle timeout, nothing handled, no answer."""
    rendered = spec.raw.render()
    served = _serve(rendered[: int(len(rendered) * cut)], eof=False, idle_timeout_s=0.05)
    assert served.elapsed_s < 2.0
    assert served.app.seen == [] and served.writer.data == b"" and served.writer.closed


def _with_lone_surrogate(value: Any, text: bytes, odd: bytes) -> bytes:
    """The first string of `value`'s JSON (or a new one) starting with `text` and then `odd`."""
    document = _dumps(value)
    if b'"' not in document:
        return b'"' + text + odd + b'"'
    return document.replace(b'"', b'"' + text + odd, 1)


json_texts = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dumps),
    # A valid document with a few bytes inserted (invalid UTF-8, controls, escapes, brackets).
    st.builds(
        _insert,
        json_values.map(_dumps),
        st.integers(0, 200),
        st.binary(min_size=1, max_size=3)
        | st.sampled_from([b"\\ud800", b"\\udcff", b"\\u0000", b"\xed\xa0\x80", b"[", b"{", b"NaN", b"\\"]),
    ),
    st.builds(
        lambda n, s: s[0] * n + s[1] * n,
        st.integers(1, 200_000),
        st.sampled_from([(b"[", b"]"), (b"{", b"}")]),
    ),
    st.builds(
        lambda v, codec: json.dumps(v).encode(codec),
        json_values,
        st.sampled_from(["utf-16", "utf-32", "utf-8-sig"]),
    ),
    # A string holding a lone surrogate (escaped, or encoded: invalid UTF-8), at any depth.
    st.builds(
        _with_lone_surrogate,
        json_values,
        st.text(max_size=3).map(str.encode),
        st.sampled_from([b"\\ud800", b"\\udcff", b"\\udbff\\udbff", b"\xed\xa0\x80", b"\xed\xbf\xbf"]),
    ),
    st.sampled_from(ODD_BODIES),
)


@budget(400)
@given(body=json_texts)
def test_request_json_parses_or_refuses(body: bytes) -> None:
    """Request.json: a value that any UTF-8 writer can write back, or BadRequest."""
    try:
        value = Request("POST", "/", {}, {}, body).json()
    except BadRequest as exc:
        assert str(exc)
        return
    # No lone surrogate got through: the log, the response and the webhooks can all encode it.
    json.dumps(value, ensure_ascii=False).encode("utf-8")


# Strings with lone surrogates, as surrogateescape makes them from header bytes ("\udcff") and
# JSON escapes can spell them ("\ud800"); never a high one right before a low one (a pair).
odd_texts = st.lists(st.text(max_size=3) | st.sampled_from(["\udcff", "\udc80", "\ud800x"]), max_size=4).map(
    "".join
)
odd_values = st.recursive(
    json_scalars | odd_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_texts, inner, max_size=3),
    max_leaves=8,
)


@budget(150)
@given(value=odd_values)
def test_response_json_always_encodes(value: Any) -> None:
    """Response.json writes valid UTF-8 JSON for any value, lone surrogates included."""
    body = Response.json(value).body
    assert json.loads(body.decode("utf-8")) == value


# -- the real daemon -------------------------------------------------------------------------

PROJECT = b"@PROJECT@"  # replaced by the world's project; a mutated placeholder names no directory
DAEMON_ROUTES = [
    *[("POST", "/v1/publish")] * 4,
    *[("POST", "/v1/hook")] * 3,
    *[("POST", "/v1/publish/batch"), ("GET", "/v1/events")] * 2,
    *[("GET", "/v1/status"), ("GET", "/v1/subscriptions"), ("GET", "/v1/deadletters")],
    *[("POST", "/v1/ack"), ("POST", "/v1/status"), ("GET", "/v1/nope")],
]  # never /v1/shutdown, never follow=1
topics = st.lists(st.sampled_from(["a", "b", "tool", "bash", "x-y", "z:1"]), min_size=1, max_size=4).map(
    ".".join
)
# Mostly plain payloads; some with lone surrogates (sent as \u escapes), which must be refused.
daemon_payloads = st.one_of(json_values, json_values, json_values, odd_values)
valid_publish_bodies = st.fixed_dictionaries(
    {"topic": topics}, optional={"payload": daemon_payloads, "correlationId": st.text(max_size=8)}
)
publish_bodies = st.one_of(
    valid_publish_bodies,
    valid_publish_bodies,
    st.fixed_dictionaries({}, optional={k: json_values for k in [*PUBLISH_FIELDS, "bogus"]}),
    json_values,
)
hook_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "hook_event_name": st.sampled_from(
                ["SessionStart", "PreToolUse", "PostToolUse", "SubagentStop", "Notification", "Nope", ""]
            ),
            "session_id": st.sampled_from(["s1", "s2"]),  # a new session waits briefly for its start
        },
        optional={
            "tool_name": json_values,
            "tool_use_id": json_values,
            "agent_id": json_values,
            "agent_type": json_values,
            "notification_type": json_values,
            "tool_input": daemon_payloads,
            "prompt_id": json_values,
        },
    ),
    json_values,
)


@st.composite
def daemon_requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(raw request, intact): a request to a real route, mutated unless intact."""
    method, path = draw(st.sampled_from(DAEMON_ROUTES))
    params = {}
    if path == "/v1/events":
        params = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "topic": topics | st.text(max_size=8),
                    "since": st.sampled_from(["2h", "2026-11-24T10:00:00Z", "x", ""]),
                    # FOUND BUG (query.py): a limit over sys.maxsize closes the connection unanswered.
                    "limit": st.sampled_from(["1", "0", "-1", "x", "9" * 18]),
                    "correlation": st.text(max_size=6),
                    "after": st.sampled_from(["0", "x", "-5"]),
                },
            )
        )
    body: Any = b""
    if method == "POST":
        if path == "/v1/publish/batch":
            body = draw(st.fixed_dictionaries({"events": st.lists(publish_bodies, max_size=3)}) | json_values)
        elif path == "/v1/hook":
            body = draw(hook_bodies)
        else:
            body = draw(publish_bodies)
        body = json.dumps(body).encode()  # ASCII: a lone surrogate goes as a \u escape
    target = path + ("?" + urlencode(params) if params else "")
    # Mostly the project; sometimes none, or a directory that does not exist, named in bytes
    # that are not UTF-8 (the error message quotes it).
    project_dir = draw(st.sampled_from([PROJECT] * 8 + [None, PROJECT + b"-\xff\xfe"]))
    project = [(b"Elsabro-Project", project_dir)] if project_dir else []
    raw = _Raw(method.encode(), target.encode(), [(b"Host", b"x"), (b"Connection", b"close"), *project], body)
    if draw(st.sampled_from([True, False])):
        return raw.render(), True
    # FOUND BUG (redact.py/log.py): a body nested ~500 deep kills the project's writer.
    # The daemon's request limit is 16 MiB: nothing here comes near it.
    return draw(mutated_requests(raw, max_depth=300, oversize=False)), False


@pytest.fixture
def world(world: World) -> World:
    """The conftest world with a short idle timeout, so a stalled request costs a second."""
    world.env["ELSABRO_IDLE_TIMEOUT_S"] = "1"
    world.settings = Settings.from_env(world.env)
    return world


def _exchange(world: World, data: bytes, *, half_close: bool = True, deadline_s: float = 5.0) -> bytes:
    """Send `data` (then half-close, so a cut request ends now, not at the idle timeout) and read
    until the daemon closes; fail past the deadline."""
    received = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(deadline_s)
        sock.connect(str(world.settings.socket_path))
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end of the request: the answer is waiting
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"neither answered nor closed within {deadline_s} s: {data[:300]!r}"
                ) from None
            if not chunk:
                break
            received += chunk
            assert time.monotonic() < deadline, f"still sending after {deadline_s} s"
    return bytes(received)


def test_daemon_survives_fuzzed_requests(world: World, daemon: DaemonProcess) -> None:
    project = str(world.project).encode()

    @budget(250)
    @given(request=daemon_requests())
    def send(request: tuple[bytes, bool]) -> None:
        data, intact = request
        # An intact request says Connection: close, as elsabro's client does; no half-close for
        # it, since a half-closed client is taken for gone while a response is streamed.
        answer = _exchange(world, data.replace(PROJECT, project), half_close=not intact)
        if intact:  # a well-formed request always gets an answer, never a bare close
            assert answer, f"closed without an answer: {data[:300]!r}"
        event("intact" if intact else "mutated")
        for response in _answers(answer, [], cut_ok=not intact):
            event(f"status {response.status}")
            assert response.status < 500 or response.status == 503, (response.status, response.body[:300])
        assert daemon.process is not None and daemon.process.poll() is None, "the daemon died"

    send()
    status = world.client().status()
    assert status["pid"] == daemon.pid
    before = len(world.events())
    stored = world.client().publish({"topic": "fuzz.done", "payload": {"n": 1}})
    after = world.events()
    assert len(after) == before + 1
    assert after[-1]["id"] == stored["id"] and after[-1]["topic"] == "fuzz.done"
    assert after[-1]["payload"] == {"n": 1}


# == 2. Topics ================================================================================

SEGMENT_CHARS = string.ascii_letters + string.digits + "_-:"
TOPIC_GRAMMAR = re.compile(r"[A-Za-z0-9_\-:]+(\.[A-Za-z0-9_\-:]+)*")
PATTERN_GRAMMAR = re.compile(r"([A-Za-z0-9_\-:]+|\*|#)(\.([A-Za-z0-9_\-:]+|\*|#))*")


def reference_regex(pattern: str, topic: str) -> bool:
    """Every segment as `.segment`: `*` is one more, `#` any number of them."""
    parts = {"*": r"\.[^.]+", "#": r"(?:\.[^.]+)*"}
    regex = "".join(parts.get(seg, r"\." + re.escape(seg)) for seg in pattern.split("."))
    return re.fullmatch(regex, "." + topic) is not None


def reference_recursive(pattern: list[str], topic: list[str]) -> bool:
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference_recursive(rest, topic[i:]) for i in range(len(topic) + 1))
    return bool(topic) and head in ("*", topic[0]) and reference_recursive(rest, topic[1:])


segments = st.sampled_from(["a", "b", "ab", "tool", "x-y", "z:1", "_"]) | st.text(
    SEGMENT_CHARS, min_size=1, max_size=4
)
valid_topics = st.lists(segments, min_size=1, max_size=6).map(".".join)


@st.composite
def patterns_for(draw: st.DrawFn, topic: str) -> str:
    """A pattern made from `topic` (often matching it): segments become wildcards, # goes anywhere."""
    parts = []
    for seg in topic.split("."):
        parts.append(draw(st.sampled_from([seg, seg, "*", "#", draw(segments)])))
        if draw(st.integers(0, 5)) == 0:
            parts.append("#")
    if draw(st.integers(0, 5)) == 0:
        parts.insert(0, "#")
    if draw(st.integers(0, 5)) == 0 and len(parts) > 1:
        del parts[draw(st.integers(0, len(parts) - 1))]
    return ".".join(parts)


valid_patterns = st.lists(segments | st.sampled_from(["*", "#"]), min_size=1, max_size=6).map(".".join)


@budget(300)
@given(data=st.data(), topic=valid_topics)
def test_matches_agrees_with_the_references(data: st.DataObject, topic: str) -> None:
    pattern = data.draw(patterns_for(topic) | valid_patterns)
    assume(len(pattern) <= MAX_TOPIC_CHARS and len(topic) <= MAX_TOPIC_CHARS)
    check_topic(topic)
    check_pattern(pattern)
    expected = reference_recursive(pattern.split("."), topic.split("."))
    assert reference_regex(pattern, topic) == expected  # the two references agree
    assert matches(pattern, topic) == expected, (pattern, topic)


@budget(100)
@given(topic=valid_topics)
def test_a_topic_matches_itself_and_hash(topic: str) -> None:
    assert matches(topic, topic) and matches("#", topic) and matches(topic + ".#", topic)
    assert not matches(topic + ".*", topic)


grammar_texts = (
    st.text(st.sampled_from("ab.*#-_:Z9 \n\t\x00é/"), max_size=12)
    | st.text(max_size=20)
    | st.text(SEGMENT_CHARS + ".", min_size=250, max_size=260)
)


@budget(300)
@given(text=grammar_texts)
def test_check_topic_and_pattern_follow_the_grammar(text: str) -> None:
    """Arbitrary text: UsageError exactly when the grammar refuses it, and nothing else."""
    for check, grammar in ((check_topic, TOPIC_GRAMMAR), (check_pattern, PATTERN_GRAMMAR)):
        valid = len(text) <= MAX_TOPIC_CHARS and grammar.fullmatch(text) is not None
        try:
            check(text)
        except UsageError as exc:
            assert not valid, f"{check.__name__} refused {text!r}: {exc}"
        else:
            assert valid, f"{check.__name__} accepted {text!r}"


# == 3. Config and filters ====================================================================

# JMESPath over a stored event: fields, literals, and the built-in functions.
FIELDS = [
    *("payload", "payload.a", "payload.a.b", "payload[0]", "payload[*]", "payload.*", "payload[?a]"),
    *("payload[-1:]", "payload[]", "payload | [0]", "metadata", "metadata.agentId", "topic", "id", "@"),
]
LITERALS = ["`1`", "`-2.5`", '`"x"`', "`null`", "`true`", '`[1, "a"]`', '`{"a": 1}`', "'s'", '`""`']
# FOUND BUG (dispatch.py): floor and ceil of an infinite number raise OverflowError; left out.
UNARY = [
    *("length", "abs", "keys", "values", "max", "min", "sort", "sum", "avg", "to_number", "to_string"),
    *("type", "reverse", "not_null", "to_array"),
]


def _filter_expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(FIELDS + LITERALS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(
                "{} {} {}".format,
                inner,
                st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]),
                inner,
            ),
            st.builds("!{}".format, inner),
            st.builds("({})".format, inner),
            st.builds("{}({})".format, st.sampled_from(UNARY), inner),
            st.builds(
                "{}({}, {})".format,
                st.sampled_from(["contains", "starts_with", "ends_with", "merge", "join"]),
                inner,
                inner,
            ),
            st.builds("{}({}, &a)".format, st.sampled_from(["sort_by", "max_by", "min_by", "map"]), inner),
            st.builds("{}[?{}]".format, st.sampled_from(FIELDS), inner),
        )

    return st.recursive(leaves, extend, max_leaves=5)


def _mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid three times in four: a config must be nearly right for validation to get deep."""
    return st.one_of(valid, valid, valid, other)


names = st.sampled_from(["a", "b", "c", "d-1"])
valid_handlers = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("exec"), "argv": st.lists(st.text(max_size=4), min_size=1, max_size=2)}
    ),
    st.fixed_dictionaries({"type": st.just("append"), "path": st.text(min_size=1, max_size=6)}),
    st.fixed_dictionaries({"type": st.just("publish"), "topic": topics}),
    st.fixed_dictionaries({"type": st.just("webhook"), "endpoint": names}),
)
handlers = _mostly(
    valid_handlers,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["exec", "append", "publish", "webhook", "nope"])},
        optional={
            "argv": st.lists(st.text(max_size=4), max_size=2) | json_scalars,
            "path": st.text(max_size=6) | json_scalars,
            "topic": topics | json_scalars,
            "endpoint": names,
            "env": st.dictionaries(st.text(max_size=3), st.text(max_size=3) | json_scalars, max_size=2),
        },
    )
    | json_values,
)
options = _mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "maxRetries": st.integers(0, 100),
            "ack": st.sampled_from(["auto", "manual"]),
            "queue": st.sampled_from(["q", "r"]),
            "durable": st.booleans(),
            "timeout": st.integers(1, 10**6),
        },
    ),
    st.dictionaries(
        st.sampled_from(
            ["queue", "durable", "ack", "maxRetries", "retryDelay", "timeout", "ackWait", "bogus"]
        ),
        json_scalars | st.sampled_from(["auto", "manual"]),
        max_size=3,
    )
    | json_values,
)
filters = st.text(st.sampled_from("abc.[]*@`'\"=!<>&|(), 0123456789?:{}-"), max_size=30) | st.text(
    max_size=12
)


def subscriptions(name_values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nearly valid subscriptions: each part is sometimes wrong, the whole rarely not an object."""
    entry = st.fixed_dictionaries(
        {"name": _mostly(names, name_values), "handler": handlers},
        optional={
            "topic": _mostly(topics, st.text(max_size=6) | json_scalars),
            "pattern": _mostly(valid_patterns, st.text(max_size=6) | json_scalars),
            "filter": _mostly(_filter_expressions(), filters | json_scalars),
            "options": options,
        },
    )
    return _mostly(entry, json_values)


webhook_endpoints = st.fixed_dictionaries(
    {"id": _mostly(names, json_scalars), "url": _mostly(st.just("https://x.example/h"), st.text(max_size=8))},
    optional={
        "events": st.lists(valid_patterns | st.text(max_size=4), max_size=2) | json_scalars,
        "secret": st.sampled_from(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_é", "plain"])
        | st.lists(st.text(max_size=6), max_size=2)
        | json_scalars,
        "format": st.sampled_from(["elsabro", "standard", "cloudevents", "x"]),
        "enabled": json_scalars,
        "timeout": json_scalars,
    },
)
redaction = st.fixed_dictionaries(
    {},
    optional={
        "patterns": st.lists(
            st.fixed_dictionaries(
                {"name": _mostly(st.text("abc-", min_size=1, max_size=4), json_scalars)},
                # FOUND BUG (config.py): a regex like `a{99999999999}` or deeply nested raises
                # OverflowError/RecursionError: 8 characters cannot reach either.
                optional={"regex": _mostly(st.text("a()[]{}*+?|\\^$.0-9,", max_size=8), json_scalars)},
            ),
            max_size=2,
        ),
        "dropPaths": st.lists(st.text(max_size=6), max_size=2) | json_scalars,
    },
)


def configs(name_values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """Documents shaped like a config (nearly valid, so validation gets deep), or any JSON."""
    events = st.fixed_dictionaries(
        {},
        optional={
            "enabled": json_scalars,
            "webhooks": st.fixed_dictionaries(
                {}, optional={"endpoints": _mostly(st.lists(webhook_endpoints, max_size=2), json_values)}
            ),
            "bus": st.dictionaries(st.sampled_from(["maxListeners", "defaultTimeout", "x"]), json_scalars),
        },
    )
    document = st.fixed_dictionaries(
        {"subscriptions": _mostly(st.lists(subscriptions(name_values), max_size=4), json_values)},
        optional={
            "$schema": json_scalars,
            "events": _mostly(events, json_values),
            "redaction": _mostly(redaction, json_values),
            "limits": st.dictionaries(st.sampled_from(["maxFieldChars", "x"]), json_scalars) | json_values,
            "bogus": json_values,
        },
    )
    return _mostly(document, json_values)


class _Files:
    """One project and one user config file, rewritten for each example."""

    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        (self.project / ".elsabro").mkdir(parents=True)
        self.project_file = self.project / config_mod.CONFIG_FILE
        self.user_file = root / "user.json"

    def load(self, project: bytes | None, user: bytes | None = None) -> ProjectConfig:
        for path, content in ((self.project_file, project), (self.user_file, user)):
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        return config_mod.load(self.project, self.user_file)


def _loads_or_config_error(files: _Files, project: bytes | None, user: bytes | None = None) -> None:
    try:
        loaded = files.load(project, user)
    except ConfigError as exc:
        assert exc.details and all(isinstance(line, str) and line for line in exc.details)
        assert str(exc)
    else:
        assert isinstance(loaded, ProjectConfig)


@budget(150)
@given(document=configs())
def test_config_documents_load_or_raise_config_error(document: Any) -> None:
    with tempfile.TemporaryDirectory() as root:
        _loads_or_config_error(_Files(Path(root)), _dumps(document))


@budget(80)
# FOUND BUG (config.py, merge): a subscription whose name is a list or an object, in both the
# user's and the project's file, raises TypeError; names are JSON scalars here.
@given(project=configs(json_scalars), user=configs(json_scalars))
def test_user_and_project_configs_merge_or_raise_config_error(project: Any, user: Any) -> None:
    with tempfile.TemporaryDirectory() as root:
        _loads_or_config_error(_Files(Path(root)), _dumps(project), _dumps(user))


@budget(150)
# FOUND BUG (config.py, read_json): bytes that are not UTF-8 raise UnicodeDecodeError, and
# nesting past Python's recursion limit RecursionError; text here is UTF-8 and shallow.
@given(
    text=st.text(max_size=200)
    | st.text(st.sampled_from('{}[]":,0123456789 subscriptionsname\\'), max_size=60)
)
def test_config_text_loads_or_raises_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        _loads_or_config_error(_Files(Path(root)), text.encode())


def _subscription(filter_: Any) -> dict[str, Any]:
    return {"name": "s", "pattern": "#", "filter": filter_, "handler": {"type": "exec", "argv": ["true"]}}


@st.composite
def one_part_wrong(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid subscription (exec or append: nothing that names another) with one part wrong."""
    subscription = {
        "name": draw(names),
        draw(st.sampled_from(["topic", "pattern"])): draw(valid_topics),
        "handler": draw(valid_handlers.filter(lambda h: h["type"] in ("exec", "append"))),
    }
    if draw(st.booleans()):
        subscription["filter"] = draw(_filter_expressions())
    part = draw(
        st.sampled_from(["name", "topic", "pattern", "filter", "handler", "options", "bogus", "-name"])
    )
    if part == "-name":
        del subscription["name"]
    else:
        subscription[part] = draw(
            json_values | st.text(st.sampled_from("ab.*#( ")) | st.just({"type": "exec"})
        )
    return subscription, part.lstrip("-")


@budget(150)
@given(case=one_part_wrong())
def test_a_mistake_in_a_subscription_names_its_json_path(case: tuple[dict[str, Any], str]) -> None:
    subscription, part = case
    with tempfile.TemporaryDirectory() as root:
        try:
            files = _Files(Path(root))
            files.load(_dumps({"subscriptions": [subscription]}))
        except ConfigError as exc:
            assert all(line.startswith("subscriptions[0]") for line in exc.details), exc.details
            if part in ("name", "handler", "options", "bogus"):  # a field: named in the path
                assert any(line.startswith(f"subscriptions[0].{part}") for line in exc.details), exc.details


@budget(200)
# FOUND BUG (config.py): a filter nested a few hundred levels deep raises RecursionError;
# 30 characters stay far from it.
@given(filter_=filters)
def test_filter_strings_compile_or_name_their_json_path(filter_: str) -> None:
    """A bad filter is a ConfigError naming subscriptions[0] and the filter, never a jmespath error."""
    with tempfile.TemporaryDirectory() as root:
        files = _Files(Path(root))
        try:
            loaded = files.load(_dumps({"subscriptions": [_subscription(filter_)]}))
        except ConfigError as exc:
            assert len(exc.details) == 1, exc.details
            assert exc.details[0].startswith("subscriptions[0]: invalid filter: "), exc.details
            assert "\n" not in exc.details[0]
            with pytest.raises(JMESPathError):  # refused exactly when jmespath refuses it
                jmespath.compile(filter_)
        else:
            assert loaded.subscriptions[0].filter == filter_
            jmespath.compile(filter_)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


records = st.fixed_dictionaries(
    {
        "id": st.just("evt_1"),
        # FOUND BUG (dispatch.py): `event.handler.failed` with a payload that is not an object
        # raises AttributeError in Member.receives; that topic gets object payloads only.
        "topic": valid_topics,
        "payload": json_values,
        "metadata": st.none() | st.dictionaries(st.sampled_from(["agentId", "hookEvent", "x"]), json_scalars),
        "correlationId": st.none() | st.text(max_size=4),
    }
) | st.fixed_dictionaries(
    {
        "id": st.just("evt_2"),
        "topic": st.just(FAILED_TOPIC),
        "payload": st.dictionaries(st.sampled_from(["subscription", "x"]), json_values),
    }
)


@budget(200)
@given(expression=_filter_expressions() | filters, record=records)
def test_a_compiled_filter_never_raises(expression: str, record: dict[str, Any]) -> None:
    """What a filter does with any event: True or False, and False when it cannot be evaluated."""
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError:
        assume(False)
    member = SubscriptionMember(Subscription.model_validate(_subscription(expression)))
    try:
        expected = bool(compiled.search(record))
    except (JMESPathError, TypeError, ValueError):
        expected = False  # documented: an expression that fails on this event does not match it
    own_failure = record["topic"] == FAILED_TOPIC and record["payload"].get("subscription") == "s"
    with _quiet("elsabro.dispatch"):  # each skipped event logs a warning
        assert member.wants(record) is expected
        assert member.receives(record) is (expected and not own_failure)


# == 4. The publish body ======================================================================

# Strings around the 200-character limit of type, source and the ids (and the topic's 256).
long_texts = st.integers(0, 300).map(lambda n: "é" * n)
publish_values = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from([*PUBLISH_FIELDS, "correlation_id", "bogus", ""]), json_values | topics, max_size=5
    ),
    st.fixed_dictionaries(
        {"topic": topics | st.text(max_size=8) | st.integers(1, 130).map(lambda n: ".".join(["ab"] * n))},
        optional={k: json_values | long_texts for k in PUBLISH_FIELDS[1:]},
    ),
)


@budget(200)
@given(value=publish_values)
def test_parse_publish_returns_a_request_or_bad_request(value: Any) -> None:
    try:
        spec = parse_publish(value)
    except BadRequest as exc:
        assert str(exc)
        return
    assert isinstance(spec, PublishRequest) and isinstance(value, dict)
    check_topic(spec.topic)
    assert all(len(v) <= 200 for v in (spec.type, spec.source, spec.correlation_id, spec.causation_id) if v)
    assert spec.metadata is None or isinstance(spec.metadata, dict)
    assert spec.to_event().topic == spec.topic


@budget(100)
@given(
    topic=valid_topics.filter(lambda t: len(t) <= MAX_TOPIC_CHARS),
    payload=json_values,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "correlationId": st.text(max_size=200) | long_texts.filter(lambda t: len(t) <= 200),
            "source": st.text(max_size=200) | long_texts.filter(lambda t: len(t) <= 200),
            "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        },
    ),
)
def test_parse_publish_keeps_a_valid_event(topic: str, payload: Any, extra: dict[str, Any]) -> None:
    spec = parse_publish({"topic": topic, "payload": payload, **extra})
    assert spec.topic == topic and spec.payload == payload
    assert spec.correlation_id == extra.get("correlationId") and spec.source == extra.get("source")
    assert spec.metadata == extra.get("metadata")


# == Bugs the fuzzing found outside http.py and topics.py, each fixed: the reproducers ========


def _config_load(project: bytes | None = None, user: bytes | None = None) -> None:
    with tempfile.TemporaryDirectory() as root, contextlib.suppress(ConfigError):
        _Files(Path(root)).load(project, user)


def _filter_wants(expression: str, payload: Any, topic: str = "a.b") -> None:
    member = SubscriptionMember(Subscription.model_validate(_subscription(expression)))
    assert member.receives({"id": "evt_1", "topic": topic, "payload": payload}) in (True, False)


KNOWN_BUGS: dict[str, Callable[..., None]] = {
    # config.py read_json: UnicodeDecodeError from path.read_text(), not ConfigError.
    "config-invalid-utf8": lambda: _config_load(b'{"a": "\xff"}'),
    # config.py read_json: json.loads raises RecursionError, which is not a ValueError.
    "config-deeply-nested": lambda: _config_load(b"[" * 100_000 + b"]" * 100_000),
    # config.py merge: {s.get("name"): s} with an unhashable name -> TypeError.
    "config-merge-unhashable-name": lambda: _config_load(
        b'{"subscriptions": [{"name": [1]}]}', b'{"subscriptions": [{"name": "a"}]}'
    ),
    # config.py Subscription: jmespath's recursive parser raises RecursionError.
    "config-deep-filter": lambda: _config_load(
        _dumps({"subscriptions": [_subscription("(" * 5_000 + "a" + ")" * 5_000)]})
    ),
    # config.py RedactionPattern: re.compile raises OverflowError (and RecursionError), not re.error.
    "config-regex-overflow": lambda: _config_load(
        _dumps({"redaction": {"patterns": [{"name": "x", "regex": "a{99999999999}"}]}})
    ),
    # dispatch.py wants: math.floor(inf) raises OverflowError, which is not caught.
    "filter-floor-infinity": lambda: _filter_wants("floor(payload) > `0`", math.inf),
    # dispatch.py receives: (payload or {}).get(...) on a list payload -> AttributeError.
    "receives-failed-topic-list-payload": lambda: _filter_wants("topic", [1], FAILED_TOPIC),
}


@pytest.mark.parametrize(
    "name",
    list(KNOWN_BUGS),
)
def test_found_bug(name: str) -> None:
    KNOWN_BUGS[name]()


def _answered(world: World, method: str, target: str, body: bytes = b"") -> bytes:
    """One request to the real daemon: it must be answered within 1 s; returns the status."""
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nElsabro-Project: {world.project}\r\n"
    )
    data = head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body
    try:
        answer = _exchange(world, data, half_close=False, deadline_s=1)
    except AssertionError:
        raise AssertionError(f"no answer within 1 s to {method} {target}") from None
    assert answer.startswith(b"HTTP/1.1 "), f"closed without an answer: {method} {target}"
    return answer[9:12]


def _deep_payload(world: World) -> None:
    # redact.py: redact_value recurses per level; the RecursionError in log.py's writer thread
    # is neither the OSError nor the ValueError/TypeError it catches: the writer task dies, and
    # this publish and every later one to the project hang.
    _answered(world, "POST", "/v1/publish", b'{"topic":"a.b","payload":' + b"[" * 600 + b"]" * 600 + b"}")
    _answered(world, "POST", "/v1/publish", b'{"topic":"a.c"}')


def _poisoned_spool(world: World) -> None:
    # spool.py drains hook files with json.loads, which keeps a lone surrogate; log.py refuses
    # the event, the drain raises BadRequest out of opening the project, and every request to
    # the project is answered 400 "the event cannot be stored as JSON" until the file is removed.
    spool = world.project / ".elsabro" / "spool"
    spool.mkdir(parents=True)
    hook = b'{"hook_event_name":"SessionStart","session_id":"s1","source":"startup","x":"\\ud800"}'
    (spool / f"{time.time_ns()}-1.json").write_bytes(hook)
    status = _answered(world, "POST", "/v1/publish", b'{"topic":"a.b"}')
    assert status == b"200", f"a normal publish got {status.decode()}"


DAEMON_BUGS: dict[str, Callable[[World], Any]] = {
    "poisoned-spool-blocks-the-project": _poisoned_spool,
    "deep-payload-kills-the-writer": _deep_payload,
    # query.py select_last: islice(..., limit) raises ValueError past sys.maxsize, out of the route.
    "events-huge-limit": lambda world: _answered(world, "GET", "/v1/events?limit=" + "9" * 20),
}


@pytest.mark.parametrize(
    "name",
    list(DAEMON_BUGS),
)
def test_found_daemon_bug(world: World, daemon: DaemonProcess, name: str) -> None:
    try:
        DAEMON_BUGS[name](world)
    finally:
        daemon.kill()  # a daemon whose writer died takes its whole shutdown timeout to stop
