"""Times and ids as elsabro writes them, with nothing heavy to import (readers use this too).

Times are UTC ISO 8601 with milliseconds and `Z`, as JavaScript prints them, so that
comparing two of them as strings compares the times. Ids are `evt_` and a ULID.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _UlidGenerator:
    """ULIDs (48-bit milliseconds + 80 random bits), monotonic within one process.

    Within one millisecond the random part is incremented instead of redrawn, so ids
    made by the daemon sort exactly in the order they were made.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._last_rand = (self._last_rand + 1) & ((1 << 80) - 1)
            else:
                self._last_ms = now_ms
                self._last_rand = int.from_bytes(os.urandom(10), "big")
            value = (now_ms << 80) | self._last_rand
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return "".join(reversed(chars))


_ulids = _UlidGenerator()


def new_event_id() -> str:
    """A new event id: `evt_` and a ULID, unique and sorting by creation time."""
    return "evt_" + _ulids.new()


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and `Z`, as JavaScript prints it."""
    return format_time(time.time())


def format_time(epoch_s: float) -> str:
    stamp = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
