"""The on-disk form of a project's log: JSON Lines segments, read back and recovered.

`<project>/.elsabro/events/segment-<first sequence, 20 digits>.jsonl` holds one stored
record per line. Each record's `prevHash` is the SHA-256 of the previous record's line
(the first record of a log chains to 64 zeros), across segment boundaries too. Records
of a multi-event batch carry `batchLast`, the sequence of the batch's last record, so
recovery can drop a batch that was only partly written: batches are all or nothing.

Recovery (on opening a project) follows the Kafka way: scan the newest segment; the
first record that is incomplete, unparsable, out of sequence or off the chain starts a
torn tail, which is copied to a quarantine file beside the segment and cut off. Only
unacknowledged writes can be there, because nothing is acknowledged before fsync. A
damaged record followed by intact ones is not a torn tail but corruption: the project
refuses writes (LogCorrupted) instead of cutting acknowledged events.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elsabro.core import durable
from elsabro.core.clock import now_iso
from elsabro.core.errors import LogCorrupted
from elsabro.store.base import GENESIS_HASH, Tail, line_hash, line_sequence

log = logging.getLogger("elsabro.log")

SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".jsonl"
# How far back from a segment's end to look for its last line.
_TAIL_PROBE_BYTES = 1 << 20


def segment_name(first_sequence: int) -> str:
    return f"{SEGMENT_PREFIX}{first_sequence:020d}{SEGMENT_SUFFIX}"


def list_segments(events_dir: Path) -> list[tuple[int, Path]]:
    """The segments of a log as (first sequence, path), oldest first."""
    found = []
    try:
        names = os.listdir(events_dir)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                found.append((int(digits), events_dir / name))
    found.sort()
    return found


def iter_lines(path: Path) -> Iterator[bytes]:
    """Complete lines of a segment, newline stripped; a trailing partial line is skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return  # being written right now, or a torn tail: not a record yet
            yield line[:-1]


class Positions:
    """Where the record after a sequence starts, for the last reads that stopped there.

    A consumer catching up reads the log batch after batch, each read starting where the
    last one stopped. Without this, every batch scanned its segment from the first line:
    quadratic in the segment's size (40 ms per 256 records deep into a 16 MiB segment).
    Reads run in worker threads, hence the lock.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._at: OrderedDict[int, tuple[Path, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sequence: int) -> tuple[Path, int] | None:
        with self._lock:
            return self._at.get(sequence)

    def put(self, sequence: int, where: tuple[Path, int]) -> None:
        with self._lock:
            self._at[sequence] = where
            self._at.move_to_end(sequence)
            while len(self._at) > self._size:
                self._at.popitem(last=False)


def read_lines(
    events_dir: Path,
    after_sequence: int = 0,
    max_sequence: int | None = None,
    positions: Positions | None = None,
) -> Iterator[tuple[int, bytes]]:
    """(sequence, line) of every record with after_sequence < sequence <= max_sequence.

    With `positions`, a read that starts where an earlier one stopped seeks straight there,
    and this one's stopping point is remembered in turn.
    """
    found = list_segments(events_dir)
    begin, from_byte = _start(found, after_sequence, positions.get(after_sequence) if positions else None)
    last: tuple[int, Path, int] | None = None
    try:
        for first, path in found[begin:]:
            if max_sequence is not None and first > max_sequence:
                return
            for end, raw in _lines_from(path, from_byte):
                sequence = line_sequence(raw)
                if sequence <= after_sequence:
                    continue
                if max_sequence is not None and sequence > max_sequence:
                    return
                last = (sequence, path, end)
                yield sequence, raw[:-1]
            from_byte = 0  # the following segments are read from their beginning
    finally:
        if positions is not None and last is not None:
            positions.put(last[0], (last[1], last[2]))


def _start(
    found: list[tuple[int, Path]], after_sequence: int, known: tuple[Path, int] | None
) -> tuple[int, int]:
    """Which segment to read first, and from which byte."""
    if known is not None:
        for index, (_, path) in enumerate(found):
            if path == known[0]:
                return index, known[1]
        # Not found: that segment was retired since. Fall through to the scan.
    for index in range(len(found)):
        if index + 1 == len(found) or found[index + 1][0] > after_sequence + 1:
            return index, 0
    return len(found), 0


def _lines_from(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """(end offset, complete line with its newline) from `offset` on; a partial last line is skipped."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                return  # being written right now, or a torn tail: not a record yet
            offset += len(raw)
            yield offset, raw


def read_lines_backwards(
    events_dir: Path, after_sequence: int = 0, max_sequence: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Like read_lines, newest first: `history --limit N` and `tail` stop after N matches."""
    for first, path in reversed(list_segments(events_dir)):
        for line in reversed(list(iter_lines(path))):
            sequence = line_sequence(line)
            if sequence <= after_sequence:
                return
            if max_sequence is None or sequence <= max_sequence:
                yield sequence, line
        if first <= after_sequence + 1:
            return


def last_line(path: Path) -> bytes | None:
    """The last complete line of a file, or None if it has none."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _TAIL_PROBE_BYTES))
        chunk = fh.read()
    if len(chunk) == size or chunk.count(b"\n") >= 2:
        lines = chunk.split(b"\n")
        complete = lines[:-1]  # whatever follows the last newline is not a line
        return complete[-1] if complete else None
    # One record larger than the probe: read the whole segment.
    complete_lines = list(iter_lines(path))
    return complete_lines[-1] if complete_lines else None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sequence"), int):
        return None
    return record


def _start_of_segment(segments: list[tuple[int, Path]], base_hash: str) -> tuple[int, str]:
    """The sequence and hash the newest segment must continue from."""
    if len(segments) < 2:
        return segments[0][0] - 1 if segments else 0, base_hash
    previous = last_line(segments[-2][1])
    return segments[-1][0] - 1, line_hash(previous) if previous is not None else base_hash


def recover(events_dir: Path, keep_recent: int, base_hash: str = GENESIS_HASH) -> Tail:
    """Open a log for writing: validate the newest segment and cut a torn tail.

    `base_hash` is what the oldest segment chains from: genesis, unless retention removed
    the segments before it.
    """
    segments = list_segments(events_dir)
    if not segments:
        return Tail()
    path = segments[-1][1]
    sequence, chain = _start_of_segment(segments, base_hash)
    tail = Tail(sequence=sequence, hash=chain, segment=path)
    data = path.read_bytes()
    offset = 0
    batch_start: int | None = None  # offset of the first record of an unfinished batch
    while offset < len(data):
        end = data.find(b"\n", offset)
        line = data[offset:end] if end >= 0 else data[offset:]
        record = _parse(line) if end >= 0 else None
        if record is None or record["sequence"] != tail.sequence + 1 or record.get("prevHash") != tail.hash:
            break
        batch_last = record.get("batchLast")
        if isinstance(batch_last, int) and batch_last > record["sequence"]:
            batch_start = offset if batch_start is None else batch_start
        else:
            batch_start = None
        tail.sequence, tail.hash = record["sequence"], line_hash(line)
        _remember(tail, record, line, keep_recent)
        offset = end + 1
    if offset < len(data):
        _refuse_if_corrupt(path, data, offset, tail.sequence)
    if batch_start is not None:
        offset = batch_start  # a batch cut short is dropped whole
        _forget_from(tail, data, batch_start, _start_of_segment(segments, base_hash))
    if offset < len(data):
        _quarantine(path, data, offset, tail)
    return tail


def _remember(tail: Tail, record: dict[str, Any], line: bytes, keep_recent: int) -> None:
    tail.recent.append((record["sequence"], line))
    if len(tail.recent) > keep_recent * 2:
        del tail.recent[:-keep_recent]
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("spoolId"), str):
        tail.spool_ids.add(metadata["spoolId"])


def _forget_from(tail: Tail, data: bytes, offset: int, start: tuple[int, str]) -> None:
    """Roll the tail back to just before `offset` (the start of an unfinished batch)."""
    kept = data[:offset]
    lines = kept.split(b"\n")[:-1]
    if lines:
        tail.sequence, tail.hash = json.loads(lines[-1])["sequence"], line_hash(lines[-1])
    else:
        tail.sequence, tail.hash = start
    tail.recent = [(seq, line) for seq, line in tail.recent if seq <= tail.sequence]


def _refuse_if_corrupt(path: Path, data: bytes, offset: int, good_sequence: int) -> None:
    """A damaged record with intact records after it is corruption, not a torn tail."""
    rest = data[offset:].split(b"\n")
    for line in rest[1:-1]:  # the first is the damaged one; the last has no newline
        record = _parse(line)
        if record is not None and record["sequence"] > good_sequence + 1:
            raise LogCorrupted(
                f"{path}: the record after sequence {good_sequence} (byte {offset}) is damaged "
                f"but sequence {record['sequence']} follows it; run `elsabro verify`, then `elsabro repair`"
            )


def quarantine(path: Path, data: bytes, offset: int) -> Path:
    """Move `data[offset:]` of a segment into a quarantine file beside it (never deleted) and cut
    the segment there; a segment cut at 0 is removed, so no empty segment breaks the numbering."""
    stamp = now_iso().replace(":", "").replace("-", "").replace(".", "")
    target = path.with_name(f"{path.name}.quarantine-{stamp}")
    durable.write_atomically(target, data[offset:])
    if offset:
        with open(path, "r+b") as fh:
            fh.truncate(offset)
            os.fsync(fh.fileno())
    else:
        path.unlink()
    durable.fsync_dir(path.parent)
    return target


def _quarantine(path: Path, data: bytes, offset: int, tail: Tail) -> None:
    target = quarantine(path, data, offset)
    tail.quarantined_bytes = len(data) - offset
    tail.quarantine_path = target
    log.warning(
        "torn tail: moved %d bytes after sequence %d of %s to %s",
        tail.quarantined_bytes,
        tail.sequence,
        path,
        target.name,
    )
