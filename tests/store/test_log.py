"""The project log: group commit, segments, the hash chain, recovery and failing closed."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from elsabro.core.errors import BadRequest, Busy, LogCorrupted, WriteFailed
from elsabro.core.model import Event, PublishRequest
from elsabro.core.settings import Settings
from elsabro.store import base as store
from elsabro.store import segments
from elsabro.store.log import ProjectLog


def settings(**overrides: Any) -> Settings:
    return Settings(socket_path=Path("/nonexistent/d.sock"), **overrides)


def event(n: int, topic: str = "test.event") -> Any:
    return PublishRequest(topic=topic, payload={"n": n}).to_event()


async def _append_batches(
    log: ProjectLog, batches: list[int], sequential: bool = False
) -> list[list[dict[str, Any]]]:
    log.start()
    try:
        if sequential:  # one commit each
            return [await log.append([event(i) for i in range(size)]) for size in batches]
        return await asyncio.gather(*(log.append([event(i) for i in range(size)]) for size in batches))
    finally:
        await log.close()


def write(
    project: Path, batches: list[int], sequential: bool = False, **overrides: Any
) -> list[list[dict[str, Any]]]:
    log = ProjectLog(project, settings(**overrides))
    log.open()
    return asyncio.run(_append_batches(log, batches, sequential))


def lines_of(project: Path) -> list[bytes]:
    out: list[bytes] = []
    for _, path in segments.list_segments(project / ".elsabro" / "events"):
        out.extend(path.read_bytes().splitlines())
    return out


def newest_segment(project: Path) -> Path:
    return segments.list_segments(project / ".elsabro" / "events")[-1][1]


def assert_chain(project: Path) -> list[dict[str, Any]]:
    chain = store.GENESIS_HASH
    records = []
    for number, line in enumerate(lines_of(project), start=1):
        record = json.loads(line)
        assert record["sequence"] == number
        assert record["prevHash"] == chain
        chain = segments.line_hash(line)
        records.append(record)
    return records


def test_concurrent_appends_get_gapless_sequences_and_a_valid_chain(tmp_path: Path) -> None:
    results = write(tmp_path, [1] * 200 + [5] * 20)
    records = assert_chain(tmp_path)
    assert len(records) == 300
    acknowledged = sorted(r["sequence"] for batch in results for r in batch)
    assert acknowledged == list(range(1, 301))


def test_group_commit_shares_one_write_among_concurrent_appends(tmp_path: Path) -> None:
    write(tmp_path, [1] * 50, segment_max_bytes=1)
    # Every commit after the first rolls to a new segment here: few segments, few commits.
    assert len(segments.list_segments(tmp_path / ".elsabro" / "events")) < 10


def test_batch_records_are_contiguous_and_marked(tmp_path: Path) -> None:
    [batch] = write(tmp_path, [4])
    assert [r["sequence"] for r in batch] == [1, 2, 3, 4]
    assert {r["batchLast"] for r in batch} == {4}
    [single] = write(tmp_path, [1])
    assert "batchLast" not in single[0]


def test_segments_roll_by_size_and_the_chain_crosses_them(tmp_path: Path) -> None:
    write(tmp_path, [1] * 60, sequential=True, segment_max_bytes=2000)
    found = segments.list_segments(tmp_path / ".elsabro" / "events")
    assert len(found) > 3
    assert found[0][0] == 1
    assert_chain(tmp_path)
    # Reading from a sequence skips whole segments before it and returns the rest in order.
    tail = [seq for seq, _ in segments.read_lines(tmp_path / ".elsabro" / "events", after_sequence=45)]
    assert tail == list(range(46, 61))


def test_reopening_continues_the_sequence_and_chain(tmp_path: Path) -> None:
    write(tmp_path, [3])
    write(tmp_path, [2], segment_max_bytes=1)  # forces a new segment on reopen
    assert len(assert_chain(tmp_path)) == 5


def test_torn_tail_is_quarantined_and_cut(tmp_path: Path) -> None:
    write(tmp_path, [1] * 5)
    segment = newest_segment(tmp_path)
    with open(segment, "ab") as fh:
        fh.write(b'{"id":"evt_half","type":"X","topic":"x","sequ')  # a crash mid-write
    log = ProjectLog(tmp_path, settings())
    tail = log.open()
    assert tail.sequence == 5
    assert tail.quarantine_path is not None
    assert tail.quarantine_path.read_bytes() == b'{"id":"evt_half","type":"X","topic":"x","sequ'
    assert tail.quarantine_path.parent == segment.parent
    assert segment.read_bytes().endswith(b"}\n")
    asyncio.run(_append_batches(log, [1]))
    assert len(assert_chain(tmp_path)) == 6


def test_complete_but_unparsable_last_line_is_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, [1] * 3)
    with open(newest_segment(tmp_path), "ab") as fh:
        fh.write(b"\x00\x00\x00garbage\n")
    tail = ProjectLog(tmp_path, settings()).open()
    assert tail.sequence == 3 and tail.quarantined_bytes == 11


def test_a_batch_cut_short_is_dropped_whole(tmp_path: Path) -> None:
    write(tmp_path, [1, 1])
    write(tmp_path, [4])
    segment = newest_segment(tmp_path)
    data = segment.read_bytes()
    # Keep the first two records of the 4-event batch, as if the crash came mid-batch.
    keep = data[: data.index(b"\n", data.index(b'"sequence":4,')) + 1]
    segment.write_bytes(keep)
    tail = ProjectLog(tmp_path, settings()).open()
    assert tail.sequence == 2
    assert [json.loads(line)["sequence"] for line in lines_of(tmp_path)] == [1, 2]


def test_damage_in_the_middle_refuses_writes(tmp_path: Path) -> None:
    write(tmp_path, [1] * 5)
    segment = newest_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    start = data.index(b'"sequence":3,')
    data[start - 20] ^= 0x01  # one flipped bit inside record 3
    segment.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted, match="after sequence 2"):
        segments.recover(segment.parent, 10)
    log = ProjectLog(tmp_path, settings())
    log.open()
    assert isinstance(log.failure, LogCorrupted)
    with pytest.raises(LogCorrupted):
        asyncio.run(_append_batches(log, [1]))
    assert segment.read_bytes() == bytes(data)  # nothing was cut


def test_fsync_failure_stops_acknowledgements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, [1])
    log = ProjectLog(tmp_path, settings())
    log.open()

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def scenario() -> None:
        log.start()
        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        with pytest.raises(WriteFailed, match="Input/output error"):
            await log.append([event(1)])
        monkeypatch.undo()  # the disk is fine again, but the writer must stay stopped
        with pytest.raises(WriteFailed):
            await log.append([event(2)])
        await log.close()

    asyncio.run(scenario())
    assert log.committed_sequence == 1


def test_full_queue_answers_busy(tmp_path: Path) -> None:
    log = ProjectLog(tmp_path, settings(queue_max_events=10))
    log.open()

    async def scenario() -> None:
        log.start()
        first = asyncio.ensure_future(log.append([event(i) for i in range(10)]))
        await asyncio.sleep(0)  # queued, not yet written
        with pytest.raises(Busy):
            await log.append([event(99)])
        await first
        await log.close()

    asyncio.run(scenario())


def test_read_serves_recent_records_from_memory_and_older_from_disk(tmp_path: Path) -> None:
    write(tmp_path, [1] * 50)
    log = ProjectLog(tmp_path, settings(recent_records=10))
    log.open()
    assert [seq for seq, _ in log.read(after_sequence=45)] == [46, 47, 48, 49, 50]
    assert [seq for seq, _ in log.read(after_sequence=5)] == list(range(6, 51))


def test_reading_backwards_matches_reading_forwards(tmp_path: Path) -> None:
    write(tmp_path, [1] * 40, sequential=True, segment_max_bytes=1500)
    events_dir = tmp_path / ".elsabro" / "events"
    assert len(segments.list_segments(events_dir)) > 3
    forwards = list(segments.read_lines(events_dir, after_sequence=7, max_sequence=33))
    backwards = list(segments.read_lines_backwards(events_dir, after_sequence=7, max_sequence=33))
    assert backwards == forwards[::-1]
    assert [seq for seq, _ in backwards][:2] == [33, 32]


def test_an_event_no_json_writer_can_write_is_refused_alone(tmp_path: Path) -> None:
    log = ProjectLog(tmp_path, settings())
    log.open()
    unwritable = Event.new("test.bad", {"text": "\ud800"})  # a lone surrogate has no UTF-8 form

    async def scenario() -> tuple[BaseException | list[dict[str, Any]], ...]:
        log.start()
        results = await asyncio.gather(
            log.append([event(1)]), log.append([unwritable]), log.append([event(2)]), return_exceptions=True
        )
        after = await log.append([event(3)])  # the writer goes on
        await log.close()
        return (*results, after)

    first, bad, second, after = asyncio.run(scenario())
    assert isinstance(bad, BadRequest) and "cannot be stored as JSON" in str(bad)
    assert [r["sequence"] for r in (*first, *second, *after)] == [1, 2, 3]  # type: ignore[misc]
    assert [r["sequence"] for r in assert_chain(tmp_path)] == [1, 2, 3]
