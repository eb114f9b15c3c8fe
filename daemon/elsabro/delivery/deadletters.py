"""The project's dead letters: events a subscription still failed after all its retries.

`.elsabro/deadletters.jsonl`, one entry per line with the seed's `DeadLetterEvent`
fields (`originalEvent`, `error` {`message`, `detail`}, `subscriber`, `failedAt`,
`retryCount`) plus an `id`. Appends are fsynced; a removal (after a successful retry,
or a purge) rewrites the file atomically. Dead letters are few by nature.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from elsabro.core import durable
from elsabro.core.errors import NotFound
from elsabro.core.model import new_event_id, now_iso
from elsabro.core.redact import scrub

FILE = Path(".elsabro") / "deadletters.jsonl"


class DeadLetters:
    """One project's dead-letter file (blocking I/O: call from a thread)."""

    def __init__(self, project: Path) -> None:
        self.path = project / FILE
        self._lock = threading.Lock()

    def add(
        self, record: dict[str, Any], subscriber: str, message: str, detail: str, retry_count: int
    ) -> dict[str, Any]:
        entry = {
            "id": "dlq_" + new_event_id().removeprefix("evt_"),
            "originalEvent": record,
            # A handler's message and stderr can hold what it was given: redacted like events.
            "error": {"message": scrub(message), "detail": scrub(detail)},
            "subscriber": subscriber,
            "failedAt": now_iso(),
            "retryCount": retry_count,
        }
        line = _line(entry)
        with self._lock:
            durable.append(self.path, line)
        return entry

    def entries(self, subscriber: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        found = [json.loads(line) for line in lines if line.strip()]
        return [
            e
            for e in found
            if (subscriber is None or e["subscriber"] == subscriber)
            and (since is None or e["failedAt"] >= since)
        ]

    def get(self, entry_id: str) -> dict[str, Any]:
        for entry in self.entries():
            if entry["id"] == entry_id:
                return entry
        raise NotFound(f"no dead letter {entry_id}")

    def update(self, entry_id: str, **changes: Any) -> None:
        self._rewrite(lambda e: {**e, **changes} if e["id"] == entry_id else e)

    def remove(self, entry_ids: set[str]) -> int:
        before = len(self.entries())
        self._rewrite(lambda e: None if e["id"] in entry_ids else e)
        return before - len(self.entries())

    def _rewrite(self, change: Any) -> None:
        with self._lock:
            kept = [c for c in (change(e) for e in self.entries()) if c is not None]
            durable.write_atomically(self.path, b"".join(_line(e) for e in kept))


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
