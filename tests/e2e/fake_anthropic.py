"""A scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI offline.

Stdlib only. Start it as a context manager; it listens on 127.0.0.1 on an ephemeral port and exposes
``base_url`` for ``ANTHROPIC_BASE_URL``. Every reply to ``POST /v1/messages`` is decided by a *script*:
a callable that receives the parsed request body and returns the assistant content blocks to send,
or ``None`` when the request is not one it scripts (title generation, a haiku side call, ...), in which
case a short plain-text ``end_turn`` reply is sent so side requests never advance the scenario.

Why stateless scripting: the CLI re-sends the whole conversation on every request, so the position in
the scenario is derivable from the request itself (how many assistant turns it already holds). That
makes retries and side requests harmless, and parallel subagent conversations independent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
Script = Callable[[dict[str, Any]], list[Block] | None]

#: Hard cap on scripted replies: past it every request gets a final text, so a CLI that loops forever
#: (e.g. because a tool kept failing validation) still terminates instead of hanging the test.
MAX_SCRIPTED_REPLIES = 200
SIDE_REPLY_TEXT = "OK"


def tool_use(tool_id: str, name: str, tool_input: dict[str, Any]) -> Block:
    """A ``tool_use`` content block (the id shows up as ``tool_use_id`` in hook payloads)."""
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def text(value: str) -> Block:
    """A ``text`` content block."""
    return {"type": "text", "text": value}


def message_text(message: dict[str, Any]) -> str:
    """All text of one message, whether its content is a string or a list of blocks."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def first_user_text(body: dict[str, Any]) -> str:
    """Text of the first user message: the CLI prepends system reminders there, so match by substring."""
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            return message_text(message)
    return ""


def assistant_turns(body: dict[str, Any]) -> int:
    """How many assistant replies the conversation already holds: the scenario step to play next."""
    return sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")


def tool_results(body: dict[str, Any]) -> list[Block]:
    """All ``tool_result`` blocks of the conversation, oldest first."""
    found: list[Block] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            found.extend(b for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return found


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stop_reason(blocks: list[Block]) -> str:
    return "tool_use" if any(b.get("type") == "tool_use" for b in blocks) else "end_turn"


class FakeAnthropic:
    """Scripted Messages API server. Use as ``with FakeAnthropic(script) as api: ... api.base_url``.

    ``requests`` logs every request received (method, path, selected headers, JSON body, and what was
    answered), so a test can assert on what the CLI sent (e.g. the ``tools`` array it advertised).
    """

    def __init__(self, script: Script, *, request_timeout: float = 30.0) -> None:
        self.script = script
        self.request_timeout = request_timeout
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._scripted = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="fake-anthropic",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- introspection ---------------------------------------------------------------------------
    def messages_requests(self) -> list[dict[str, Any]]:
        """Logged ``POST .../messages`` requests (excluding count_tokens), in arrival order."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r["method"] == "POST" and r["path"].split("?")[0].endswith("/v1/messages")
            ]

    def advertised_tools(self) -> dict[str, dict[str, Any]]:
        """Tool definitions (name -> definition) from the first request that carried a ``tools`` array."""
        for req in self.messages_requests():
            tools = (req.get("body") or {}).get("tools")
            if tools:
                return {t.get("name", "?"): t for t in tools}
        return {}

    # -- replying --------------------------------------------------------------------------------
    def _decide(self, body: dict[str, Any]) -> tuple[list[Block], str]:
        """Ask the script; fall back to a plain text reply for side requests and after the cap."""
        with self._lock:
            over_cap = self._scripted >= MAX_SCRIPTED_REPLIES
        blocks: list[Block] | None = None
        if not over_cap:
            try:
                blocks = self.script(body)
            except Exception as err:  # a script bug must end the session, not hang it
                return [text(f"fake_anthropic script error: {err!r}")], "error"
        if not blocks:
            return [text(SIDE_REPLY_TEXT)], "side" if not over_cap else "cap"
        with self._lock:
            self._scripted += 1
        return blocks, "scripted"

    def _message_events(self, blocks: list[Block], model: str) -> Iterator[bytes]:
        msg_id = f"msg_fake_{next(self._ids):04d}"
        usage = {
            "input_tokens": 10,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        )
        for index, block in enumerate(blocks):
            if block["type"] == "tool_use":
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            yield _sse(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
            )
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(blocks), "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})

    def _message_json(self, blocks: list[Block], model: str) -> dict[str, Any]:
        return {
            "id": f"msg_fake_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": _stop_reason(blocks),
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }

    def handle_post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, str, str]:
        """(status, payload, content type, what-was-answered) for one POST."""
        if path.endswith("/count_tokens"):
            return 200, json.dumps({"input_tokens": 100}).encode(), "application/json", "count_tokens"
        if not path.endswith("/v1/messages"):
            error = {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"fake: no route {path}"},
            }
            return 404, json.dumps(error).encode(), "application/json", "404"
        blocks, kind = self._decide(body)
        model = str(body.get("model") or "claude-fake")
        if body.get("stream"):
            return 200, b"".join(self._message_events(blocks, model)), "text/event-stream", kind
        return 200, json.dumps(self._message_json(blocks, model)).encode(), "application/json", kind

    def log_request(self, handler: BaseHTTPRequestHandler, body: Any, answered: str) -> None:
        wanted = ("anthropic-beta", "anthropic-version", "user-agent", "x-app")
        entry = {
            "t": time.time(),
            "method": handler.command,
            "path": handler.path,
            "body": body,
            "answered": answered,
            "headers": {k.lower(): v for k, v in handler.headers.items() if k.lower() in wanted},
        }
        with self._lock:
            self.requests.append(entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client connection must not block shutdown
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.fake.request_timeout)  # a half-sent request can't pin a thread

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", f"req_fake_{time.monotonic_ns()}")
        # One request per connection: simpler than keep-alive and nothing lingers at exit.
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.close_connection = True

    def do_HEAD(self) -> None:  # the CLI probes connectivity with HEAD /
        self.server.fake.log_request(self, None, "head")
        self._send(200, b"")

    def do_GET(self) -> None:  # nothing real to serve: an empty JSON object keeps callers happy
        self.server.fake.log_request(self, None, "get")
        self._send(200, b"{}")

    def _read_body(self) -> bytes:
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks: list[bytes] = []
        for _ in range(100_000):  # bounded: a malformed stream cannot loop forever
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()  # blank line after the last chunk (no trailers expected)
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk
        return b"".join(chunks)

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw[:2000].decode("utf-8", "replace")}
        status, payload, ctype, answered = self.server.fake.handle_post(self.path.split("?")[0], body)
        self.server.fake.log_request(self, body, answered)
        self._send(status, payload, ctype)
