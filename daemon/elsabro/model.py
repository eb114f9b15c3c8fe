"""The event model: the seed's `Event`, the stored record, and how ids and times are made.

Field names on the wire and on disk are the seed's (camelCase: `correlationId`,
`storedAt`, ...); Python code uses snake_case attributes. Every record carries every
field (absent values are `null`), so consumers never guess which keys exist.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from .errors import UsageError
from .topics import check_topic

DEFAULT_SOURCE = "elsabro"

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


def infer_type(topic: str) -> str:
    """The seed's type inference: `agent.started` -> `AgentStarted`."""
    return "".join(part[:1].upper() + part[1:] for part in topic.split("."))


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Event(_Wire):
    """An event as the seed defines it."""

    id: str
    type: str
    topic: str
    timestamp: str
    source: str = DEFAULT_SOURCE
    correlation_id: str | None = None
    causation_id: str | None = None
    metadata: dict[str, Any] | None = None
    payload: Any = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class StoredEvent(Event):
    """An event as the log keeps it: plus its gapless per-project `sequence` and `storedAt`.

    `prevHash` is the SHA-256 of the previous record's line, chaining the log so an
    edit, a removal or a reordering can be detected.
    """

    model_config = ConfigDict(extra="ignore")

    sequence: int
    stored_at: str
    prev_hash: str | None = None


class PublishRequest(_Wire):
    """What a publisher sends: a topic and a payload, the rest optional."""

    topic: str
    payload: Any = None
    type: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    correlation_id: str | None = Field(default=None, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = None

    @field_validator("topic")
    @classmethod
    def _topic_is_valid(cls, value: str) -> str:
        try:
            check_topic(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None  # pydantic reports ValueErrors with the field's path
        return value

    def to_event(self) -> Event:
        return Event(
            id=new_event_id(),
            type=self.type or infer_type(self.topic),
            topic=self.topic,
            timestamp=now_iso(),
            source=self.source or DEFAULT_SOURCE,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            metadata=self.metadata,
            payload=self.payload,
        )
