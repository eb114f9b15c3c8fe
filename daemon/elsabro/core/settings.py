"""One settings object for the daemon and its clients, and the paths they share.

The socket path follows one rule that the POSIX hook computes too (hooks/elsabro-hook.sh):

    $ELSABRO_SOCKET                                  if set, else
    $XDG_RUNTIME_DIR/elsabro/daemon.sock             if XDG_RUNTIME_DIR is set, else
    $HOME/.local/state/elsabro/daemon.sock           if HOME is set, else
    refused (UsageError): never a directory shared by all users such as /tmp

Every numeric setting can be overridden with an environment variable named
`ELSABRO_` plus the field name in upper case (`ELSABRO_SEGMENT_MAX_BYTES=1048576`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from elsabro.core.errors import UsageError
from elsabro.core.jsonbody import MAX_JSON_NODES

# AF_UNIX paths are limited to 108 bytes on Linux and 104 on macOS, terminator included.
MAX_SOCKET_PATH_BYTES = 103


def socket_path_from_env(env: Mapping[str, str]) -> Path:
    if env.get("ELSABRO_SOCKET"):
        return Path(env["ELSABRO_SOCKET"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "elsabro" / "daemon.sock"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".local" / "state" / "elsabro" / "daemon.sock"
    # Never a shared fallback such as /tmp: another user could make the directory first and
    # answer for the daemon, or have events sent to them.
    raise UsageError(
        "no private place for the daemon's socket: neither XDG_RUNTIME_DIR nor HOME is set; "
        "set one of them, or ELSABRO_SOCKET"
    )


@dataclass(frozen=True)
class Settings:
    """Everything the daemon and the client need to know, in one place.

    A plain dataclass, not a pydantic model: the CLI's hot paths import this and must
    start fast.
    """

    socket_path: Path
    # A hook payload carries whole files and tool outputs; larger requests are refused.
    max_request_bytes: int = 16 * 1024 * 1024
    # Events waiting for the writer, per project; past this a publish answers "busy".
    queue_max_events: int = 20_000
    # Events written and fsynced together at most (group commit).
    commit_max_events: int = 2_000
    segment_max_bytes: int = 16 * 1024 * 1024
    # Recent records kept in memory per project for `tail -f` and live readers.
    recent_records: int = 4_096
    # A connection that sends nothing for this long is closed (stalled clients).
    idle_timeout_s: float = 30.0
    # A request's line and headers must be whole this long after the connection opens (or after
    # the request's first byte on a kept-alive connection), and its body this long after them:
    # a client trickling a byte now and then is dropped, not kept forever.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    # Connections served at once on the Unix socket, and on the TCP listener; more are closed at
    # once, unread. The TCP listener is open to every local user, so its limit is small: a flood
    # there costs bounded memory and descriptors, and the owner's socket keeps its own.
    max_connections: int = 1024
    max_tcp_connections: int = 64
    # Values (objects, arrays, scalars) in one JSON body: each costs memory when parsed, far more
    # than its bytes (five million empty lists fit in 16 MiB). Hook payloads hold a few hundred.
    max_json_nodes: int = MAX_JSON_NODES
    shutdown_timeout_s: float = 10.0
    start_timeout_s: float = 10.0
    # 0: the Unix socket only. Otherwise the daemon also listens on 127.0.0.1:<port> (never another
    # address), and every request there needs `Authorization: Bearer <the token in token_path>`.
    tcp_port: int = 0
    # How often the daemon retries spooled events a full disk left behind.
    maintenance_interval_s: float = 10.0
    # How often the daemon applies each project's retention policy (`elsabro cleanup` runs it now).
    retention_interval_s: float = 3600.0
    # The time redaction may take per event; fields reached after it are replaced whole
    # (`[REDACTED:budget]`), so no input can stall the writer.
    redaction_budget_ms: float = 200.0

    @cached_property
    def state_dir(self) -> Path:
        """Where the daemon keeps its own state (the list of projects it served)."""
        import platformdirs  # here, not at the top: the CLI's publish path never needs it

        return Path(platformdirs.user_state_dir("elsabro"))

    @cached_property
    def log_dir(self) -> Path:
        import platformdirs

        return Path(platformdirs.user_log_dir("elsabro"))

    @cached_property
    def user_config_file(self) -> Path:
        """The user's config, merged under every project's `.elsabro/config.json`."""
        import platformdirs

        return Path(platformdirs.user_config_dir("elsabro")) / "config.json"

    @property
    def lock_path(self) -> Path:
        return self.socket_path.with_name("daemon.lock")

    @property
    def token_path(self) -> Path:
        """The TCP listener's bearer token (owner-only; made on first use)."""
        return self.state_dir / "token"

    @property
    def projects_file(self) -> Path:
        return self.state_dir / "projects.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        overrides: dict[str, int | float] = {}
        for field in dataclasses.fields(cls):
            key = "ELSABRO_" + field.name.upper()
            if key in env and field.type in ("int", "float"):
                convert = int if field.type == "int" else float
                try:
                    overrides[field.name] = convert(env[key])
                except ValueError:
                    raise UsageError(f"{key} must be a number, not {env[key]!r}") from None
        return cls(socket_path=socket_path_from_env(env), **overrides)  # type: ignore[arg-type]

    def check_socket_path(self) -> None:
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise UsageError(
                f"socket path {self.socket_path} is longer than {MAX_SOCKET_PATH_BYTES} bytes; "
                "set ELSABRO_SOCKET to a shorter path"
            )


def default_project(env: dict[str, str] | None = None, cwd: Path | None = None) -> Path:
    """`$CLAUDE_PROJECT_DIR`, else the git top level of the working directory, else it."""
    env = dict(os.environ) if env is None else env
    if env.get("CLAUDE_PROJECT_DIR"):
        return Path(env["CLAUDE_PROJECT_DIR"]).absolute()
    here = (cwd or Path.cwd()).absolute()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return here
