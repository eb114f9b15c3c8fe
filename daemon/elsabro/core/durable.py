"""Small files written so that a crash leaves either the old or the new content.

Every state file elsabro keeps beside the log (cursors, dead letters, the projects a
daemon served, Claude Code settings) goes through these: write a temporary file, fsync
it, rename it over the old one, fsync the directory; appends are fsynced before return.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a directory so a created, renamed or removed entry survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600, *, fsync: bool = True) -> None:
    """Replace `path` with `data`: readers and crashes see the old file or the new one.

    `fsync=False` is for caches (an index, a snapshot): still never half-written for a
    reader, but after a crash the file may be missing, which a cache tolerates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per thread too: two threads may refresh the same cache file at once.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.unlink(temporary)  # a full disk must not leave a partial file behind
        raise
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if fsync:
        fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append(path: Path, data: bytes, *, follow_symlinks: bool = True) -> None:
    """Append `data` to `path` (created owner-only) and fdatasync it. Without `follow_symlinks`,
    a symbolic link at `path` itself is refused (OSError ELOOP)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created 0600): its fd, held until closed; None if another
    process holds it. The kernel drops it when the holder dies, however it dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
