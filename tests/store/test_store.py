"""The store contract, run over every backend; then the file store's index on a million events."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pytest

from elsabro.core.errors import DiskFull
from elsabro.core.settings import Settings
from elsabro.store import audit, index, segments
from elsabro.store.base import GENESIS_HASH, Cut, Store
from elsabro.store.files import FileStore
from elsabro.store.memory import MemoryStore
from elsabro.store.query import Query
from elsabro.store.sqlite import SqliteStore

BACKENDS = ["file", "sqlite", "memory"]


@dataclass
class Chain:
    """Writes records the way the log does: gapless sequences and the prevHash chain."""

    store: Store
    sequence: int = 0
    hash: str = GENESIS_HASH

    def add(
        self, count: int, *, topic: str = "t.x", session: str | None = "s1", at: str | None = None
    ) -> None:
        """`count` records, written five at a time (the file store rolls segments between writes)."""
        while count > 5:
            self.add(5, topic=topic, session=session, at=at)
            count -= 5
        lines = []
        for _ in range(count):
            self.sequence += 1
            lines.append(make_line(self.sequence, self.hash, topic=topic, session=session, at=at))
            self.hash = segments.line_hash(lines[-1])
        self.store.write(lines, self.sequence - count + 1)


def stamp(n: int) -> str:
    """A timestamp n seconds after a fixed start, in the daemon's shape."""
    day, rest = divmod(n, 86_400)
    hours, minutes, seconds = rest // 3600, rest // 60 % 60, rest % 60
    return f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.000Z"


def make_line(sequence: int, prev: str, *, topic: str, session: str | None, at: str | None) -> bytes:
    record = {
        "id": f"evt_{sequence:026d}",
        "type": "TX",
        "topic": topic,
        "timestamp": at or stamp(sequence),
        "source": "test",
        "correlationId": session,
        "causationId": None,
        "metadata": None,
        "payload": {"n": sequence},
        "sequence": sequence,
        "storedAt": at or stamp(sequence),
        "prevHash": prev,
    }
    return json.dumps(record, separators=(",", ":")).encode()


def open_backend(kind: str, tmp_path: Path, segment_max_bytes: int = 4096) -> Store:
    if kind == "file":
        return FileStore(
            tmp_path / "events", Settings(tmp_path / "d.sock", segment_max_bytes=segment_max_bytes)
        )
    if kind == "sqlite":
        return SqliteStore(tmp_path / "events" / "events.db")
    return MemoryStore()


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sequences(pairs: Iterator[tuple[int, bytes]]) -> list[int]:
    return [sequence for sequence, _ in pairs]


def test_write_then_read_in_both_directions_with_bounds(kind: str, tmp_path: Path) -> None:
    store = open_backend(kind, tmp_path)
    assert store.open(10).sequence == 0
    chain = Chain(store)
    chain.add(40)
    chain.add(1)
    assert sequences(store.read()) == list(range(1, 42))
    assert sequences(store.read(10, 20)) == list(range(11, 21))
    assert sequences(store.read_backwards(35)) == list(range(41, 35, -1))
    assert sequences(store.read_backwards(0, 3)) == [3, 2, 1]
    assert [json.loads(line)["sequence"] for _, line in store.read(39)] == [40, 41]


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_reopened_store_continues_the_chain(kind: str, tmp_path: Path) -> None:
    store = open_backend(kind, tmp_path)
    store.open(5)
    chain = Chain(store)
    chain.add(30)
    store.close()
    again = open_backend(kind, tmp_path)
    tail = again.open(5)
    assert (tail.sequence, tail.hash) == (30, chain.hash)
    assert [sequence for sequence, _ in tail.recent][-5:] == [26, 27, 28, 29, 30]
    chain.store = again
    chain.add(3)
    assert audit.verify_store(again).intact
    assert audit.verify_store(again).last_sequence == 33


QUERIES = [
    Query(correlation_id="s2"),
    Query(since=stamp(50), until=stamp(70)),
    Query(event_id=f"evt_{77:026d}"),
    Query(topic="t.*", correlation_id="s1", since=stamp(90)),
    Query(correlation_id="nobody"),
    Query(after_sequence=100, correlation_id="s3"),
]


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_candidates_hold_every_match_of_a_full_scan(kind: str, tmp_path: Path, query: Query) -> None:
    store = open_backend(kind, tmp_path)
    store.open(0)
    chain = Chain(store)
    for session in ("s1", "s2", "s3", "s1"):
        chain.add(30, session=session)
    reference = [line for line, _ in query.select(store.read(query.after_sequence))]
    assert [line for line, _ in query.select(store.candidates(query, None, False))] == reference
    backwards = [line for line, _ in query.select(store.candidates(query, None, True))]
    assert backwards == list(reversed(reference))


def test_retention_by_count_keeps_the_newest_and_what_a_consumer_still_needs(
    kind: str, tmp_path: Path
) -> None:
    store = open_backend(kind, tmp_path, segment_max_bytes=2048)
    store.open(0)
    chain = Chain(store)
    chain.add(100)
    lagging = store.retire(Cut(keep_from=21, max_events=10, head=100), None)
    assert lagging is not None and lagging.last_sequence <= 20  # a durable consumer is at 20
    removal = store.retire(Cut(keep_from=101, max_events=10, head=100), None)
    assert removal is not None
    left = sequences(store.read())
    assert left[-1] == 100 and len(left) >= 10 and left[0] == removal.last_sequence + 1
    assert store.removals()[-1] == removal
    assert audit.verify_store(store).intact
    chain.add(5)  # the chain goes on after a removal
    assert audit.verify_store(store).intact


def test_retention_by_age_removes_only_old_events(kind: str, tmp_path: Path) -> None:
    store = open_backend(kind, tmp_path, segment_max_bytes=2048)
    store.open(0)
    chain = Chain(store)
    chain.add(60, at="2020-01-01T00:00:00.000Z")
    chain.add(60, at="2026-01-01T00:00:00.000Z")
    removal = store.retire(Cut(keep_from=121, older_than="2025-01-01T00:00:00.000Z", head=120), None)
    assert removal is not None
    left = [json.loads(line)["timestamp"] for _, line in store.read()]
    assert left.count("2026-01-01T00:00:00.000Z") == 60  # nothing new went
    assert removal.last_sequence <= 60
    assert store.retire(Cut(keep_from=121, head=120), None) is None  # no policy, nothing goes


def test_file_retention_archives_records_and_verify_checks_the_rest(tmp_path: Path) -> None:
    store = open_backend("file", tmp_path, segment_max_bytes=2048)
    store.open(0)
    chain = Chain(store)
    chain.add(100)
    removal = store.retire(Cut(keep_from=101, max_events=20, head=100), tmp_path / "archive")
    assert removal is not None and removal.archive is not None
    import gzip

    archived = b"".join(gzip.decompress(p.read_bytes()) for p in sorted((tmp_path / "archive").iterdir()))
    assert [json.loads(line)["sequence"] for line in archived.splitlines()] == list(
        range(1, removal.last_sequence + 1)
    )
    report = audit.verify(tmp_path / "events")
    assert report.intact and report.last_sequence == 100
    store.close()
    reopened = open_backend("file", tmp_path, segment_max_bytes=2048)
    assert reopened.open(0).hash == chain.hash  # recovery chains from the removal record


def test_a_full_disk_refuses_the_write_and_keeps_the_log_as_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_backend("file", tmp_path)
    store.open(0)
    chain = Chain(store)
    chain.add(3)
    before = [path.read_bytes() for _, path in segments.list_segments(tmp_path / "events")]
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            return real_write(fd, bytes(data[:100]))  # part of the batch lands...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(DiskFull):
        Chain(store, chain.sequence, chain.hash).add(5)
    monkeypatch.undo()
    assert [path.read_bytes() for _, path in segments.list_segments(tmp_path / "events")] == before
    chain.add(2)  # space is back: writing resumes on the same chain
    assert audit.verify(tmp_path / "events").intact
    assert sequences(store.read()) == [1, 2, 3, 4, 5]


# -- the index on a million events ------------------------------------------------------------

MILLION = 1_000_000
SESSIONS = 50


def write_million(events_dir: Path) -> FileStore:
    store = FileStore(events_dir, Settings(events_dir / "d.sock", segment_max_bytes=16 * 1024 * 1024))
    store.open(0)
    # make_line's output as a template: a million json.dumps calls would take most of the test's time.
    template = (
        '{"id":"evt_%(seq)026d","type":"TX","topic":"tool.bash.completed","timestamp":"%(at)s","source":"test",'
        '"correlationId":"%(session)s","causationId":null,"metadata":null,"payload":{"n":%(seq)d},'
        '"sequence":%(seq)d,"storedAt":"%(at)s","prevHash":"%(prev)s"}'
    )
    assert (
        template % {"seq": 1, "at": "AT", "session": "SESSION", "prev": "PREV"}
        == make_line(1, "PREV", topic="tool.bash.completed", session="SESSION", at="AT").decode()
    )
    prev, batch = GENESIS_HASH, []
    for sequence in range(1, MILLION + 1):
        # Sessions run one after the other, as coding sessions do: each one spans few segments.
        session = f"session-{(sequence - 1) * SESSIONS // MILLION:03d}"
        fields = {"seq": sequence, "at": stamp(sequence), "session": session, "prev": prev}
        line = (template % fields).encode()
        prev = segments.line_hash(line)
        batch.append(line)
        if len(batch) == 20_000:
            store.write(batch, sequence - len(batch) + 1)
            batch = []
    store.close()
    return store


def test_a_million_events_indexed_queries_match_a_full_scan_and_skip_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = write_million(tmp_path / "events")
    total_segments = len(segments.list_segments(store.events_dir))
    assert total_segments > 10
    opened: list[Path] = []
    real_iter_lines = segments.iter_lines

    def counting(path: Path) -> Iterator[bytes]:
        opened.append(path)
        return real_iter_lines(path)

    queries = [
        Query(correlation_id="session-017"),
        Query(since=stamp(500_000), until=stamp(500_900)),
        Query(correlation_id="session-049", topic="tool.*.completed", limit=5),
    ]
    references: list[list[bytes]] = [[] for _ in queries]
    for _, line in store.read():  # the full scan, once for all the queries
        record = json.loads(line)
        for query, reference in zip(queries, references, strict=True):
            if query.accepts(record):
                reference.append(line)
    references[2] = references[2][-5:]
    for query, reference in zip(queries, references, strict=True):
        monkeypatch.setattr(segments, "iter_lines", counting)
        opened.clear()
        found = [line for line, _ in query.select(store.candidates(query, None, False))]
        monkeypatch.undo()
        assert found == reference and found
        assert len(opened) <= 3  # the index ruled out every other segment
    # The index is a cache: deleted, it is built again and the answers stay the same.
    for path in store.index_dir.iterdir():
        path.unlink()
    query = queries[0]
    assert [line for line, _ in query.select(store.candidates(query, None, False))] == references[0]
    assert (
        index.for_segment(store.index_dir, segments.list_segments(store.events_dir)[0][1]).last_sequence > 0
    )


def test_the_index_reads_escaped_session_ids_and_odd_lines(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    odd = [
        make_line(1, GENESIS_HASH, topic="t.x", session='quote"and\\slash', at=stamp(5)),
        make_line(2, "x", topic="t.x", session=None, at=stamp(1)),
        make_line(3, "y", topic="t.x", session="plain", at=stamp(9)),
    ]
    path = events / segments.segment_name(1)
    path.write_bytes(b"\n".join(odd) + b"\n" + b'{"torn')
    built = index.build(path)
    assert (built.first_sequence, built.last_sequence) == (1, 3)
    assert (built.oldest, built.newest) == (stamp(1), stamp(9))
    assert built.correlations == {'quote"and\\slash', "plain"}
    assert built.may_match(None, None, 'quote"and\\slash') and not built.may_match(None, None, "other")
    assert not built.may_match(stamp(10), None, None) and not built.may_match(None, stamp(0), None)


def test_batched_reads_go_on_from_where_the_last_one_stopped(kind: str, tmp_path: Path) -> None:
    """A consumer reads batch after batch; every backend gives what one full read gives."""
    store = open_backend(kind, tmp_path, segment_max_bytes=2048)
    store.open(10)
    chain = Chain(store)
    chain.add(60)
    got: list[int] = []
    while batch := list(islice(store.read(got[-1] if got else 0, 55), 7)):
        got += sequences(iter(batch))
        chain.add(1)  # the log grows meanwhile
    assert got == list(range(1, 56))


def test_a_file_store_read_seeks_to_where_the_last_one_stopped(tmp_path: Path) -> None:
    """A consumer catching up must not rescan its segment from the start on every batch
    (quadratic in the segment's size): the next read seeks to where the last one stopped."""
    store = open_backend("file", tmp_path, segment_max_bytes=1 << 20)
    store.open(10)
    Chain(store).add(100)
    first = list(islice(store.read(0), 50))
    assert sequences(iter(first)) == list(range(1, 51))
    # Blank out the records already read: only a read that seeks past them still works.
    [segment] = segments.list_segments(tmp_path / "events")
    data = segment[1].read_bytes()
    read_bytes = sum(len(line) + 1 for _, line in first)
    segment[1].write_bytes(b" " * (read_bytes - 1) + b"\n" + data[read_bytes:])
    assert sequences(store.read(50)) == list(range(51, 101))
    with pytest.raises(ValueError):  # a read from the start meets the blanked bytes
        list(store.read(10))
