"""The event model: the seed's `Event`, the stored record, and how ids and times are made.

Field names on the wire and on disk are the seed's (camelCase: `correlationId`,
`storedAt`, ...); Python code uses snake_case attributes. Every record carries every
field (absent values are `null`), so consumers never guess which keys exist.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from elsabro.core.clock import format_time, new_event_id, now_iso
from elsabro.core.errors import UsageError
from elsabro.core.topics import check_topic

__all__ = [
    "CLAUDE_CODE_SOURCE",
    "DEFAULT_SOURCE",
    "Event",
    "PublishRequest",
    "StoredEvent",
    "format_time",
    "infer_type",
    "new_event_id",
    "now_iso",
]

DEFAULT_SOURCE = "elsabro"
# The source of every event made from a Claude Code hook.
CLAUDE_CODE_SOURCE = "claude-code"


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

    @classmethod
    def new(
        cls,
        topic: str,
        payload: Any = None,
        *,
        type: str | None = None,
        source: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: str | None = None,
    ) -> Event:
        """A new event: a fresh id, the type inferred from the topic, the time now unless given."""
        return cls(
            id=new_event_id(),
            type=type or infer_type(topic),
            topic=topic,
            timestamp=timestamp or now_iso(),
            source=source or DEFAULT_SOURCE,
            correlation_id=correlation_id,
            causation_id=causation_id,
            metadata=metadata,
            payload=payload,
        )


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
        return Event.new(
            self.topic,
            self.payload,
            type=self.type,
            source=self.source,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            metadata=self.metadata,
        )
