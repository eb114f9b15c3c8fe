"""Times users type, and query filters over records."""

from __future__ import annotations

import json

import pytest

from elsabro.core.errors import UsageError
from elsabro.store.query import Query, parse_time

NOW_S = 1_794_992_800.0  # 2026-11-18T09:06:40Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", "2026-11-18T09:06:10.000Z"),
        ("15m", "2026-11-18T08:51:40.000Z"),
        ("2h", "2026-11-18T07:06:40.000Z"),
        ("7d", "2026-11-11T09:06:40.000Z"),
        ("1w", "2026-11-11T09:06:40.000Z"),
        ("2026-11-24T10:00:00Z", "2026-11-24T10:00:00.000Z"),
        ("2026-11-24T12:00:00+02:00", "2026-11-24T10:00:00.000Z"),
        ("2026-11-24T10:00:00.5Z", "2026-11-24T10:00:00.500Z"),
    ],
)
def test_parse_time(text: str, expected: str) -> None:
    assert parse_time(text, now_s=NOW_S) == expected


def test_naive_times_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Etc/GMT-3")  # three hours east of UTC
    time.tzset()
    try:
        assert parse_time("2026-11-24T10:00:00") == "2026-11-24T07:00:00.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "", "2026-13-01", "-5m"])
def test_bad_times_are_one_clear_error(text: str) -> None:
    with pytest.raises(UsageError, match="invalid time"):
        parse_time(text)


def _line(seq: int, topic: str, stamp: str, corr: str | None = None) -> tuple[int, bytes]:
    record = {"id": f"evt_{seq}", "topic": topic, "timestamp": stamp, "correlationId": corr, "payload": None}
    record["sequence"] = seq
    return seq, json.dumps(record, separators=(",", ":")).encode()


def test_select_applies_every_filter_and_keeps_the_last_n() -> None:
    lines = [
        _line(1, "a.x", "2026-01-01T00:00:00.000Z", "s1"),
        _line(2, "a.y", "2026-01-02T00:00:00.000Z", "s1"),
        _line(3, "b.x", "2026-01-03T00:00:00.000Z", "s2"),
        _line(4, "a.x", "2026-01-04T00:00:00.000Z", "s2"),
    ]

    def seqs(query: Query) -> list[int]:
        return [record["sequence"] for _, record in query.select(lines)]

    assert seqs(Query()) == [1, 2, 3, 4]
    assert seqs(Query(topic="a.*")) == [1, 2, 4]
    assert seqs(Query(correlation_id="s2")) == [3, 4]
    assert seqs(Query(since="2026-01-02T00:00:00.000Z", until="2026-01-03T00:00:00.000Z")) == [2, 3]
    assert seqs(Query(event_id="evt_3")) == [3]
    assert seqs(Query(topic="a.#", limit=2)) == [2, 4]
    assert seqs(Query(limit=0)) == []


def test_query_params_round_trip() -> None:
    query = Query(
        topic="tool.#", since="2026-01-01T00:00:00.000Z", correlation_id="s", limit=3, after_sequence=9
    )
    assert Query.from_params(query.to_params()) == query
    with pytest.raises(UsageError, match="unknown query parameter"):
        Query.from_params({"colour": "red"})
    with pytest.raises(UsageError):
        Query.from_params({"limit": "many"})


def test_select_last_from_newest_first_equals_the_forward_limit() -> None:
    lines = [_line(n, "a.x" if n % 3 else "b.y", f"2026-01-01T00:00:{n:02d}.000Z") for n in range(1, 40)]
    for query in (Query(limit=5), Query(topic="b.#", limit=4), Query(topic="a.*", limit=100), Query(limit=0)):
        forward = [record["sequence"] for _, record in query.select(lines)]
        last = [record["sequence"] for _, record in query.select_last(reversed(lines))]
        assert last == forward
