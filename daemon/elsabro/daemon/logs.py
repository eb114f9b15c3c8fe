"""The daemon's log: where it goes (setup_logging), and two filters every line passes: secrets
redacted (RedactingFilter), and one error repeated many times a second held back (RepeatFilter).

Running out of file descriptors fails every `accept()` and every request at once; each
logged in full would fill the rotated log files within a minute and push out what
explains the trouble. A warning or error whose text was logged in the last `window_s`
seconds is held back and counted; the next time it is let through, it says how many
like it were held back.
"""

from __future__ import annotations

import logging
import logging.handlers
import time

from elsabro.core import redact
from elsabro.core.settings import Settings

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


def setup_logging(settings: Settings, *, foreground: bool) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        settings.log_dir / "daemon.log", maxBytes=5 * 1024 * 1024, backupCount=3
    )
    handler.addFilter(RepeatFilter())  # a storm of one error never fills the log
    handlers: list[logging.Handler] = [handler]
    if foreground:
        handlers.append(logging.StreamHandler())
    for each in handlers:  # on the handlers, so every logger's records pass it (httpx's too)
        each.addFilter(RedactingFilter())
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


class RedactingFilter(logging.Filter):
    """Secrets out of every log line: the message with its arguments (a request URL with its
    credentials, a handler's stderr) and a traceback's text are redacted before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact.scrub(record.exc_text)
        record.exc_info = None
        return True
