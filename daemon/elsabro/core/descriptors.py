"""Spare file descriptors, held back so the log can still start a segment when the process runs out.

A daemon serving many connections can reach its limit on open files (EMFILE). Accepting
a connection then fails and is retried, but a segment roll that fails would refuse a write
that was otherwise fine. So the daemon holds a few descriptors (on /dev/null) from the
start; a roll that hits the limit gives them back and tries once more. They are taken
again later (the daemon's maintenance loop) once descriptors are free.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXHAUSTED = (errno.EMFILE, errno.ENFILE)
SPARES = 8

_spares: list[int] = []
_lock = threading.Lock()


def exhausted(exc: OSError) -> bool:
    """Did this error come from running out of file descriptors (this process's or the system's)?"""
    return exc.errno in EXHAUSTED


def reserve(count: int = SPARES) -> int:
    """Hold up to `count` spare descriptors; how many are held now (fewer while none are free)."""
    with _lock:
        while len(_spares) < count:
            try:
                _spares.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                break
        return len(_spares)


def give_back() -> bool:
    """Close the spares so that the caller's next open can succeed; False if none were held."""
    with _lock:
        if not _spares:
            return False
        for fd in _spares:
            os.close(fd)
        _spares.clear()
        return True


def with_spares(call: Callable[[], T]) -> T:
    """Run `call` (which opens descriptors); out of them, give the spares back and run it once more."""
    try:
        return call()
    except OSError as exc:
        if not exhausted(exc) or not give_back():
            raise
    return call()
