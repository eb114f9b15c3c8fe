"""Every error elsabro raises on purpose, under one root.

    ElsabroError                  anything elsabro raises on purpose
    ├── UsageError                a bad argument from the user (a time, a topic, a pattern, JSON)
    ├── ConfigError               an invalid config file; names the JSON path of each mistake
    ├── HandlerError              one attempt of a subscription's handler failed (exit, timeout)
    ├── EventTimeout              `EventBus.once` saw no matching event in time (also a TimeoutError)
    ├── RequestError              a request the daemon refuses; the client sees the same class
    │   ├── BadRequest            malformed JSON, wrong fields, bad topic (HTTP 400)
    │   ├── ProjectError          project path not absolute, missing or not a directory (400)
    │   ├── NotFound              no such route or object (404)
    │   ├── PayloadTooLarge       body over the size limit (413)
    │   ├── Unauthorized          no valid token on the loopback TCP listener (401)
    │   ├── RequestTimeout        a request's head or body did not arrive in time (408)
    │   └── Busy                  the project's write queue is full; retry shortly (503)
    ├── StoreError                the log cannot take writes
    │   ├── WriteFailed           a write or fsync failed; the writer stopped (fail closed) (507)
    │   ├── DiskFull              no space for this write; nothing half-written, retry later (507)
    │   ├── LogCorrupted          a damaged record inside the log; writes refused until repair (409)
    │   ├── LogInUse              another process (a daemon, an embedded bus) writes this log (409)
    │   ├── ProjectMoved          the project's directory was removed or replaced; it is reopened (503)
    │   └── OutOfDescriptors      the daemon has no file descriptor left; retry shortly (503)
    └── DaemonError               the daemon process itself
        ├── DaemonNotRunning      nothing answers on the socket
        ├── DaemonAlreadyRunning  another daemon holds the lock
        └── DaemonStartFailed     a started daemon did not become ready in time

Library code raises these and never prints or exits; only the CLI turns them into a
message on stderr and an exit code. Each class carries the HTTP status and the stable
`code` the daemon sends, so the client raises the very same class on its side.
"""

from __future__ import annotations


class ElsabroError(Exception):
    """Root of every error elsabro raises on purpose."""

    code = "error"
    http_status = 500


class UsageError(ElsabroError):
    """A bad argument from the user: a time, a topic, a pattern or a JSON value."""

    code = "usage"
    http_status = 400


class ConfigError(ElsabroError):
    """An invalid config file; `details` holds one `json.path: problem` line per mistake."""

    code = "config"
    http_status = 400

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or [message]


class HandlerError(ElsabroError):
    """One attempt of a subscription's handler failed: a non-zero exit, a timeout, an I/O error."""

    code = "handler"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class EventTimeout(ElsabroError, TimeoutError):
    """`EventBus.once` waited its whole timeout for a matching event."""

    code = "event_timeout"
    http_status = 408


class RequestError(ElsabroError):
    """A request the daemon refuses."""

    code = "request"
    http_status = 400


class BadRequest(RequestError):
    """Malformed JSON, missing or unknown fields, wrong types, an invalid topic."""

    code = "bad_request"


class ProjectError(RequestError):
    """The project path is not absolute, does not exist or is not a directory."""

    code = "bad_project"


class NotFound(RequestError):
    """No such route or object."""

    code = "not_found"
    http_status = 404


class Unauthorized(RequestError):
    """A request on the loopback TCP listener without the daemon's token."""

    code = "unauthorized"
    http_status = 401


class RequestTimeout(RequestError):
    """A request's head or body did not arrive within its deadline (a client sending too slowly)."""

    code = "request_timeout"
    http_status = 408


class PayloadTooLarge(RequestError):
    """The request body is over the configured limit."""

    code = "too_large"
    http_status = 413


class Busy(RequestError):
    """The project's write queue is full: overload is refused, not queued without limit."""

    code = "busy"
    http_status = 503


class StoreError(ElsabroError):
    """The log cannot take writes."""

    code = "store"
    http_status = 500


class WriteFailed(StoreError):
    """A write or fsync failed: the writer stops acknowledging until the daemon restarts."""

    code = "write_failed"
    http_status = 507


class DiskFull(StoreError):
    """No space left for a write: it was cut back off, nothing is acknowledged, later writes may succeed."""

    code = "disk_full"
    http_status = 507


class LogCorrupted(StoreError):
    """A damaged record inside the log (not a torn tail): writes are refused until repair."""

    code = "log_corrupted"
    http_status = 409


class LogInUse(StoreError):
    """Another process writes this project's log: one writer per log, always."""

    code = "log_in_use"
    http_status = 409


class ProjectMoved(StoreError):
    """The project's directory (or its `.elsabro`) was removed or replaced since it was opened:
    nothing of this write reached the disk, and the next request opens the new directory."""

    code = "project_moved"
    http_status = 503


class OutOfDescriptors(StoreError):
    """The daemon ran out of file descriptors: nothing was written; later requests may succeed."""

    code = "out_of_descriptors"
    http_status = 503


class DaemonError(ElsabroError):
    """The daemon process itself."""

    code = "daemon"


class DaemonNotRunning(DaemonError):
    """Nothing answers on the socket."""

    code = "not_running"


class DaemonAlreadyRunning(DaemonError):
    """Another daemon holds the lock."""

    code = "already_running"


class DaemonStartFailed(DaemonError):
    """A daemon was started but did not become ready in time."""

    code = "start_failed"


def _all_subclasses(cls: type[ElsabroError]) -> list[type[ElsabroError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


# The client turns the daemon's `code` back into the same class.
BY_CODE: dict[str, type[ElsabroError]] = {c.code: c for c in _all_subclasses(ElsabroError)}
