"""The socket client used by the CLI and the Python API.

A deliberately small HTTP/1.1 client over AF_UNIX (stdlib `http.client` alone costs
about 30 ms of imports, most of a CLI call). The daemon's errors come back as the
same exception classes (see core/errors.py).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from elsabro.core.errors import BY_CODE, DaemonError, DaemonNotRunning, DaemonStartFailed, ElsabroError
from elsabro.core.settings import Settings

PROJECT_HEADER = "Elsabro-Project"


def check_socket_file(path: Path) -> bool:
    """Whether the daemon's socket exists; DaemonError if what is there is not ours to use.

    One lstat: cheap enough for every call of the CLI. A socket of another user may be a
    stranger listening for our events (and answering for the daemon); a regular file or a
    link at the path was put there by someone else's mistake and must not be replaced.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:  # a directory we may not search, a file where a directory should be
        raise DaemonError(
            f"cannot use {path}: {exc.strerror}; set ELSABRO_SOCKET to a path of yours"
        ) from None
    if not stat.S_ISSOCK(info.st_mode):
        raise DaemonError(f"{path} exists and is not a socket; set ELSABRO_SOCKET to another path")
    if info.st_uid != os.getuid():
        raise DaemonError(
            f"{path} belongs to another user (uid {info.st_uid}); set ELSABRO_SOCKET to a path of yours"
        )
    return True


class _Response:
    """An answer being read; closes its socket once the body has been read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self.headers: dict[str, str] = {}
        try:
            status_line = self._file.readline()
            if not status_line:
                raise DaemonError("the daemon closed the connection without answering")
            self.status = int(status_line.split()[1])
            while (line := self._file.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def read(self) -> bytes:
        try:
            if "content-length" in self.headers:
                return self._file.read(int(self.headers["content-length"]))
            return b"".join(self.chunks())
        finally:
            self.close()

    def chunks(self) -> Iterator[bytes]:
        """The body chunk by chunk as the daemon sends them (or whole, if it sent a length)."""
        if "content-length" in self.headers:
            yield self.read()
            return
        try:
            while True:
                size_line = self._file.readline()
                if not size_line:
                    return
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return
                yield self._file.read(size)
                self._file.readline()  # the CRLF after each chunk
        finally:
            self.close()


class Client:
    """Talks to the daemon for one project (or none, for daemon-wide calls)."""

    def __init__(self, settings: Settings, project: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.project = project
        self.timeout_s = timeout_s

    def _open(self, method: str, path: str, body: bytes | None, timeout_s: float | None) -> _Response:
        if not check_socket_file(self.settings.socket_path):
            raise DaemonNotRunning(f"no elsabro daemon on {self.settings.socket_path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self.settings.socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonNotRunning(f"no elsabro daemon on {self.settings.socket_path}") from None
        head = [f"{method} {path} HTTP/1.1", "Host: elsabro", "Connection: close"]
        if self.project is not None:
            head.append(f"{PROJECT_HEADER}: {self.project}")
        data = body or b""
        head.append(f"Content-Length: {len(data)}")
        if body is not None:
            head.append("Content-Type: application/json")
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + data)
            return _Response(sock)
        except (OSError, ValueError) as exc:
            sock.close()
            raise DaemonError(f"talking to the daemon failed: {exc}") from None

    def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> bytes:
        """One request; the raw body of a 2xx answer, or the daemon's error raised."""
        if params:
            path += "?" + urlencode(params, quote_via=quote)
        encoded = (
            None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogateescape")
        )
        response = self._open(method, path, encoded, self.timeout_s)
        try:
            data = response.read()
        except OSError as exc:
            raise DaemonError(f"reading the daemon's answer failed: {exc}") from None
        if response.status >= 300:
            raise error_from(response.status, data)
        return data

    def call_json(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        return json.loads(self.call(method, path, body, params))

    def stream(self, path: str, params: dict[str, str], timeout_s: float | None = None) -> Iterator[bytes]:
        """Lines of a streamed answer (`follow`) as they arrive; TimeoutError after `timeout_s` of silence."""
        # Connected and answered before returning: a missing daemon raises here, not mid-iteration.
        response = self._open("GET", path + "?" + urlencode(params, quote_via=quote), None, timeout_s)
        if response.status >= 300:
            raise error_from(response.status, response.read())
        return _lines(response)

    def post_stream(self, path: str, body: Any) -> Iterator[bytes]:
        """Lines of a streamed answer to a POST (a replay's progress), as they arrive."""
        response = self._open("POST", path, json.dumps(body).encode(), None)
        if response.status >= 300:
            raise error_from(response.status, response.read())
        return _lines(response)

    # -- the calls themselves ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call_json("GET", "/v1/status")
        return result

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call_json("POST", "/v1/publish", event)
        return result

    def publish_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call_json("POST", "/v1/publish/batch", {"events": events})[
            "events"
        ]
        return result

    def events(self, params: dict[str, str]) -> list[bytes]:
        """Stored records matching the query, one JSON line each, oldest first."""
        return self.call("GET", "/v1/events", params=params).splitlines()

    def shutdown(self) -> None:
        self.call("POST", "/v1/shutdown")


def _lines(response: _Response) -> Iterator[bytes]:
    pending = b""
    for chunk in response.chunks():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines


def error_from(status: int, data: bytes) -> ElsabroError:
    try:
        return error_of(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return DaemonError(f"the daemon answered {status}: {data[:200]!r}")


def error_of(error: dict[str, str]) -> ElsabroError:
    """The daemon's {"code", "message"} as the same exception class it was raised as."""
    return BY_CODE.get(error["code"], ElsabroError)(error["message"])


def is_running(settings: Settings) -> bool:
    try:
        Client(settings, timeout_s=2.0).status()
    except DaemonError:
        return False
    return True


def start_daemon(settings: Settings) -> None:
    """Start a detached daemon and wait until it answers (or say why it did not)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "elsabro", "daemon", "run", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own session: nothing that waits on us waits on it
        # The socket of these settings, which may not be the environment's (EventBus(settings=...)).
        env={**os.environ, "ELSABRO_SOCKET": str(settings.socket_path)},
    )
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if is_running(settings):
            return
        if process.poll() is not None:
            if is_running(settings):  # lost a race to another starter: fine
                return
            reason = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise DaemonStartFailed(f"the daemon exited at start: {reason or 'see its log'}")
        time.sleep(0.02)
    raise DaemonStartFailed(
        f"the daemon did not answer on {settings.socket_path} within {settings.start_timeout_s} s"
    )


def ensure_daemon(settings: Settings, *, detached: bool = False) -> None:
    """Make sure a daemon answers, starting one if none does.

    `detached` is for a long-lived caller (the Python API): the daemon is started by a
    short-lived `elsabro daemon start`, so it is not the caller's child, and neither a
    running child nor a zombie of it is left with the caller.
    """
    if is_running(settings):
        return
    if not detached:
        start_daemon(settings)
        return
    try:
        result = subprocess.run(
            [sys.executable, "-m", "elsabro", "daemon", "start"],
            env={**os.environ, "ELSABRO_SOCKET": str(settings.socket_path)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=settings.start_timeout_s + 10,
        )
    except subprocess.TimeoutExpired:
        raise DaemonStartFailed(f"starting the daemon on {settings.socket_path} did not finish") from None
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or ["see its log"]
        raise DaemonStartFailed(f"the daemon did not start: {reason[0]}")


def lock_is_held(settings: Settings) -> bool:
    """True while a daemon holds its lock: the one sure sign that it still runs."""
    import fcntl

    try:
        fd = os.open(settings.lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False


def stop_daemon(settings: Settings) -> bool:
    """Ask the daemon to shut down gracefully and wait until it is gone. False if none ran."""
    try:
        Client(settings, timeout_s=5.0).shutdown()
    except DaemonNotRunning:
        return False
    deadline = time.monotonic() + settings.shutdown_timeout_s + 5.0
    while lock_is_held(settings):
        if time.monotonic() > deadline:
            raise DaemonError(f"the daemon did not stop within {settings.shutdown_timeout_s + 5.0:.0f} s")
        time.sleep(0.02)
    return True
