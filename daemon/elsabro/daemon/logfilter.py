"""Keeping the daemon's log readable when one error repeats many times a second.

Running out of file descriptors fails every `accept()` and every request at once; each
logged in full would fill the rotated log files within a minute and push out what
explains the trouble. A warning or error whose text was logged in the last `window_s`
seconds is held back and counted; the next time it is let through, it says how many
like it were held back.
"""

from __future__ import annotations

import logging
import time

MAX_KEYS = 1_000


class RepeatFilter(logging.Filter):
    """The same warning or error at most once per `window_s`, with a count of the ones held back."""

    def __init__(self, window_s: float = 30.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # first line -> (logged at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage().split("\n", 1)[0])
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} more like this since the last one)"
            record.args = None
        self._seen.pop(key, None)
        self._seen[key] = (now, 0)
        while len(self._seen) > MAX_KEYS:  # the oldest first: dicts keep insertion order
            del self._seen[next(iter(self._seen))]
        return True
