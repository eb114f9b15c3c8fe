"""The event model: field names on the wire, type inference, ids that sort by time."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from elsabro.core.model import Event, PublishRequest, StoredEvent, infer_type, new_event_id

EVENT_FIELDS = [
    "id",
    "type",
    "topic",
    "timestamp",
    "source",
    "correlationId",
    "causationId",
    "metadata",
    "payload",
]


def test_event_serializes_with_exactly_the_seed_field_names() -> None:
    event = PublishRequest(topic="agent.started", payload={"agentId": "a1"}, correlation_id="s1").to_event()
    assert list(event.to_wire()) == EVENT_FIELDS


def test_stored_event_adds_sequence_and_stored_at() -> None:
    event = PublishRequest(topic="task.created", payload=1).to_event()
    stored = StoredEvent(**event.to_wire(), sequence=7, storedAt="2026-11-24T10:00:00.000Z")
    wire = stored.model_dump(by_alias=True)
    assert list(wire)[: len(EVENT_FIELDS)] == EVENT_FIELDS
    assert wire["sequence"] == 7 and wire["storedAt"] == "2026-11-24T10:00:00.000Z"


def test_round_trip_through_json() -> None:
    event = PublishRequest(
        topic="tool.bash.completed",
        payload={"n": [1, "x"]},
        causation_id="evt_1",
        metadata={"k": "v"},
        source="t",
    ).to_event()
    again = Event.model_validate(json.loads(json.dumps(event.to_wire())))
    assert again == event


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("agent.started", "AgentStarted"),
        ("task.status.changed", "TaskStatusChanged"),
        ("x", "X"),
        ("tool.bash.completed", "ToolBashCompleted"),
    ],
)
def test_type_is_inferred_from_the_topic(topic: str, expected: str) -> None:
    assert infer_type(topic) == expected
    assert PublishRequest(topic=topic).to_event().type == expected


def test_explicit_type_wins() -> None:
    assert PublishRequest(topic="agent.started", type="Custom").to_event().type == "Custom"


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i.startswith("evt_") and len(i) == 30 for i in ids)


def test_timestamps_are_utc_milliseconds() -> None:
    stamp = PublishRequest(topic="a").to_event().timestamp
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-24T10:00:00.000Z")


def test_publish_request_refuses_unknown_fields_and_bad_topics() -> None:
    with pytest.raises(ValidationError):
        PublishRequest.model_validate({"topic": "a", "colour": "red"})
    with pytest.raises(ValidationError):
        PublishRequest.model_validate({"topic": "a.*"})
    with pytest.raises(ValidationError):
        PublishRequest.model_validate({"payload": 1})
