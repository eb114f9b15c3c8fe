"""A real HTTP receiver on 127.0.0.1 for webhook tests: scripted answers, every hit recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A scripted HTTP receiver: per path, a queue of (status, headers, delay_s); then 200."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict[str, str], float]]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    echo: set[str] = field(default_factory=set)  # paths answered with the request's headers as JSON
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str, *answers: tuple[int, dict[str, str], float]) -> None:
        with self.lock:
            self.script[path] = list(answers)

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.path == path]

    def answer(self, path: str) -> tuple[int, dict[str, str], float]:
        with self.lock:
            queue = self.script.get(path)
            if queue:
                return queue.pop(0)
            return self.always.get(path, 200), {}, 0.0


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """A Receiver listening on 127.0.0.1 (a free port) until the block ends."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with state.lock:
                state.hits.append(
                    Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                )
            status, headers, delay_s = state.answer(self.path)
            time.sleep(delay_s)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            answer = json.dumps(dict(self.headers.items())).encode() if self.path in state.echo else b"ok"
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
