"""What the daemon process asks of the machine: its lock, an owner-only socket directory, the
peer's credentials, the descriptor limit, the TCP token, and detaching from a terminal."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import secrets
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from elsabro.core import descriptors, durable
from elsabro.core.errors import DaemonAlreadyRunning, DaemonError

log = logging.getLogger("elsabro.daemon")


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory owner-only, and refuse one that another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise DaemonError(f"{path} belongs to another user; set ELSABRO_SOCKET to a directory of yours")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def listen_backlog() -> int:
    """The system's largest listen backlog: a burst of hooks connecting at once is queued by
    the kernel, not refused (asyncio's default of 100 refused the rest of 1,000)."""
    try:
        return max(int(Path("/proc/sys/net/core/somaxconn").read_text()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def acquire_lock(lock_path: Path) -> int:
    """An exclusive flock on the lock file, held for the daemon's whole life."""
    fd = durable.try_lock(lock_path)
    if fd is None:
        raise DaemonAlreadyRunning(f"another elsabro daemon holds {lock_path}")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end, where the OS tells it."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    if sys.platform == "darwin":  # LOCAL_PEERCRED on SOL_LOCAL: struct xucred, cr_uid after cr_version
        creds = sock.getsockopt(0, 0x001, struct.calcsize("Ii16i"))
        return int(struct.unpack("Ii16i", creds)[1])
    return None


def load_token(path: Path) -> str:
    """The TCP listener's token: read, or made (random, 256 bits) and saved owner-only."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    durable.write_atomically(path, token.encode(), 0o600)
    return token


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; the soft limit now.

    Each connection holds a descriptor and each open project several (its lock, its
    segment, watches); the usual soft limit of 1,024 is reached by a busy daemon long
    before the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if sys.platform == "darwin":
        wanted = min(wanted, 10_240)  # OPEN_MAX: setrlimit refuses more there
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, wanted, exc)
    return soft


def log_descriptor_errors_briefly(loop: asyncio.AbstractEventLoop) -> None:
    """An `accept()` out of descriptors is retried by asyncio each second: one line, no traceback."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and descriptors.exhausted(exc):
            log.error("out of file descriptors: %s (%s); retrying", context.get("message"), exc.strerror)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
