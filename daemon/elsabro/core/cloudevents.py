"""A stored event as a CloudEvents 1.0 structured-mode object (webhooks, `export`).

Plain dicts only: the CLI's `history` path imports this and must not load pydantic.
"""

from __future__ import annotations

from typing import Any


def cloudevent(record: dict[str, Any]) -> dict[str, Any]:
    """A stored event as a CloudEvents 1.0 structured-mode object."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": record["id"],
        "source": f"/elsabro/{record.get('source') or 'elsabro'}",
        "type": record["topic"],
        "time": record["timestamp"],
        "datacontenttype": "application/json",
        "data": record.get("payload"),
        "elsabrotype": record["type"],
    }
    for attribute, key in (
        ("correlationid", "correlationId"),
        ("causationid", "causationId"),
        ("sequence", "sequence"),
    ):
        if record.get(key) is not None:
            event[attribute] = record[key]
    return event
