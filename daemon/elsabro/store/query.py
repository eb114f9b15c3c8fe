"""What to select from a log: the filters of `history`, `tail` and the query endpoint.

Times accept ISO 8601 (`2026-11-24T10:00:00Z`, `2026-11-24`; without an offset they
are local time) and relative forms counted back from now: `30s`, `15m`, `2h`, `7d`,
`2w`. Event timestamps are UTC ISO strings of one fixed shape, so comparing the
normalised strings compares the times.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from typing import Any

from elsabro.core.clock import format_time
from elsabro.core.errors import UsageError
from elsabro.core.topics import check_pattern, matches

MAX_LIMIT = 1_000_000_000
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now_s: float | None = None) -> str:
    """A user's time (ISO 8601 or `15m`-style, back from now) as a UTC ISO timestamp."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        back_s = float(relative.group(1)) * _UNIT_S[relative.group(2)]
        return format_time((time.time() if now_s is None else now_s) - back_s)
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: use ISO 8601 (2026-11-24T10:00:00Z) "
            "or a duration back from now (15m, 2h, 7d)"
        ) from None
    return format_time(stamp.timestamp())  # a naive time is local, as a user means it


@dataclass(frozen=True)
class Query:
    """Filters over stored records; every one is optional."""

    topic: str | None = None  # a topic or pattern (`*`, `#`)
    since: str | None = None  # normalised UTC ISO, inclusive
    until: str | None = None  # normalised UTC ISO, inclusive
    correlation_id: str | None = None
    event_id: str | None = None
    caused_by: str | None = None  # this event and every event its causation links lead back to it
    after_sequence: int = 0
    limit: int | None = None  # the last `limit` matches, oldest first

    def __post_init__(self) -> None:
        if self.topic is not None:
            check_pattern(self.topic)
        if self.limit is not None and not 0 <= self.limit <= MAX_LIMIT:
            raise UsageError(f"limit must be between 0 and {MAX_LIMIT}")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Query:
        """From the query string of a request (times already normalised by the client)."""
        unknown = set(params) - {
            "topic",
            "since",
            "until",
            "correlation",
            "id",
            "causedBy",
            "after",
            "limit",
            "follow",
        }
        if unknown:
            raise UsageError(f"unknown query parameter {sorted(unknown)[0]!r}")
        try:
            return cls(
                topic=params.get("topic") or None,
                since=parse_time(params["since"]) if params.get("since") else None,
                until=parse_time(params["until"]) if params.get("until") else None,
                correlation_id=params.get("correlation") or None,
                event_id=params.get("id") or None,
                caused_by=params.get("causedBy") or None,
                after_sequence=int(params.get("after") or 0),
                limit=int(params["limit"]) if params.get("limit") else None,
            )
        except ValueError as exc:
            raise UsageError(f"invalid query: {exc}") from None

    def to_params(self) -> dict[str, str]:
        pairs = {
            "topic": self.topic,
            "since": self.since,
            "until": self.until,
            "correlation": self.correlation_id,
            "id": self.event_id,
            "causedBy": self.caused_by,
            "after": str(self.after_sequence) if self.after_sequence else None,
            "limit": str(self.limit) if self.limit is not None else None,
        }
        return {key: value for key, value in pairs.items() if value is not None}

    def needles(self) -> list[bytes]:
        """Byte strings every matching line must contain: a cheap test before parsing."""
        needles = []
        if self.correlation_id is not None:
            needles.append(b'"correlationId":' + json.dumps(self.correlation_id).encode())
        if self.event_id is not None:
            needles.append(b'"id":' + json.dumps(self.event_id).encode())
        return needles

    def accepts(self, record: Mapping[str, Any]) -> bool:
        if self.topic is not None and not matches(self.topic, record["topic"]):
            return False
        if self.since is not None and record["timestamp"] < self.since:
            return False
        if self.until is not None and record["timestamp"] > self.until:
            return False
        if self.correlation_id is not None and record.get("correlationId") != self.correlation_id:
            return False
        return self.event_id is None or record.get("id") == self.event_id

    def _descendants(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """The `caused_by` event and its effects, transitively, that the other filters accept.

        An effect is stored after its cause, so one pass in log order (`lines` must be in
        log order) follows every link; the links run through records the filters reject.
        """
        chain = {self.caused_by}
        for _, line in lines:
            record = json.loads(line)
            if record.get("id") in chain or record.get("causationId") in chain:
                chain.add(record.get("id"))
                if self.accepts(record):
                    yield line, record

    def select_last(self, newest_first: Iterable[tuple[int, bytes]]) -> list[tuple[bytes, dict[str, Any]]]:
        """The last `limit` matches, oldest first, reading newest first and stopping early."""
        assert self.limit is not None
        found = list(islice(Query.select(replace(self, limit=None), newest_first), self.limit))
        found.reverse()
        return found

    def select(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """The matching (line, record) of `lines`, honouring `limit` (the most recent ones)."""
        needles = self.needles()
        matched: Iterable[tuple[bytes, dict[str, Any]]] = (
            (line, record)
            for _, line in lines
            if all(needle in line for needle in needles) and self.accepts(record := json.loads(line))
        )
        if self.caused_by is not None:
            matched = self._descendants(lines)
        if self.limit is not None:
            matched = deque(matched, maxlen=self.limit)
        yield from matched
