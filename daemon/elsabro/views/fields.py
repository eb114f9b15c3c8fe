"""Reading the fields of stored records defensively, and the time arithmetic the views share.

Payloads miss fields and other publishers share the log: a field of the wrong type counts
as absent, never as an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

Record = dict[str, Any]
Row = dict[str, Any]

# Starts waiting for their finish. Some never finish (denied calls) and would grow a
# snapshot forever: past this many, the oldest are forgotten.
OPEN_LIMIT = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PHASES = ("started", "completed", "failed")


def as_text(value: Any) -> str | None:
    """A string, or an id written as a number; anything else counts as absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return as_str(value)


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def fields(record: Record) -> tuple[str, dict[str, Any], str | None]:
    """(topic, payload, timestamp) of any record, whatever it holds."""
    payload = record.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    return as_str(record.get("topic")) or "", payload, as_str(record.get("timestamp"))


def micros(stamp: str | None) -> int | None:
    """Microseconds since the epoch, exactly (floats would turn 81 ms into 80.99999 ms)."""
    try:
        parsed = datetime.fromisoformat((stamp or "").replace("Z", "+00:00"))  # 3.10 cannot read Z
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH) // timedelta(microseconds=1)


def elapsed_us(start: str | None, end: str | None) -> int | None:
    """end - start; None when either is unknown or the clocks say time went backwards."""
    first, last = micros(start), micros(end)
    return None if first is None or last is None or last < first else last - first


def ms(micros: int | None) -> int | float | None:
    if micros is None:
        return None
    return micros // 1000 if micros % 1000 == 0 else micros / 1000


def seconds(micros: float | None) -> float | None:
    return None if micros is None else micros / 1e6


def duration_ms(payload: dict[str, Any], start: str | None, end: str | None) -> int | float | None:
    """The hook's own measure when it gave one, else the time between the two events."""
    given = payload.get("duration_ms")
    if isinstance(given, (int, float)) and not isinstance(given, bool) and given >= 0:
        return given
    return ms(elapsed_us(start, end))


def tool_event(record: Record) -> tuple[str, str] | None:
    """(phase, tool name) of a `tool.<tool>.started|completed|failed` record, else None."""
    topic, payload, _ = fields(record)
    parts = topic.split(".")
    if len(parts) < 3 or parts[0] != "tool" or parts[-1] not in _PHASES:
        return None
    # The payload spells the name as Claude Code does ("Bash"); the topic has it in lower case.
    name = as_str(payload.get("tool_name")) or ".".join(parts[1:-1])
    return (parts[-1], name) if name else None


def remember(mapping: dict[str, Any], key: str, value: Any) -> None:
    mapping.pop(key, None)  # a repeated key moves to the newest end
    mapping[key] = value
    while len(mapping) > OPEN_LIMIT:
        del mapping[next(iter(mapping))]


def percentile(values: Iterable[int | float], p: int) -> int | float | None:
    """Nearest-rank percentile: the value at 1-based rank ceil(p * n / 100) of the sorted values."""
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)  # ceil in integers: no float rounding at the boundaries
    return ordered[max(rank, 1) - 1] if ordered else None
