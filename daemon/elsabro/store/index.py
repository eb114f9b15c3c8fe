"""A small index per sealed segment, so that bounded queries skip what they cannot match.

For each segment that is no longer written to, `.elsabro/index/<segment>.json` keeps its
first and last sequence, the oldest and newest event time, and the correlation ids (the
sessions) it holds. A query by time range or by session then reads only the segments
that may hold a match: on a log of a million events, a session's history reads one or
two segments instead of thirty. Topics are not indexed: nearly every segment holds
`tool.*` events, so a topic set would rule out almost nothing.

An index is a cache. It is built the first time a query needs it, rebuilt when its
segment's size or modification time changed, and deleting it changes no answer.
Building one reads the segment once without parsing records: `timestamp`, `source` and
`correlationId` come first and together in every line, before any payload, so one regular
expression pass over the segment finds them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elsabro.core import durable
from elsabro.store.base import line_sequence

VERSION = 1
# A segment with more sessions than this is not indexed by session (it is always read).
MAX_CORRELATIONS = 2_000
# timestamp, source and correlationId are written next to each other, in this order.
_FIELDS = re.compile(
    rb'"timestamp":"([^"]*)","source":"(?:[^"\\]|\\.)*","correlationId":(?:null|"((?:[^"\\]|\\.)*)")'
)


@dataclass
class SegmentIndex:
    first_sequence: int
    last_sequence: int
    oldest: str  # the earliest event timestamp in the segment
    newest: str
    correlations: set[str] | None  # None: too many to keep, read the segment for any session
    size: int
    mtime_ns: int

    def may_match(self, since: str | None, until: str | None, correlation_id: str | None) -> bool:
        if since is not None and self.newest < since:
            return False
        if until is not None and self.oldest > until:
            return False
        return correlation_id is None or self.correlations is None or correlation_id in self.correlations

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "firstSequence": self.first_sequence,
            "lastSequence": self.last_sequence,
            "oldest": self.oldest,
            "newest": self.newest,
            "correlations": sorted(self.correlations) if self.correlations is not None else None,
            "size": self.size,
            "mtimeNs": self.mtime_ns,
        }


def build(segment: Path) -> SegmentIndex:
    """Read a segment once and index it."""
    info = segment.stat()
    data = segment.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # complete lines only
    if not data:
        return SegmentIndex(0, 0, "", "", set(), info.st_size, info.st_mtime_ns)
    # One regular-expression pass in C instead of a Python loop over every line.
    found = _FIELDS.findall(data)
    if len(found) != data.count(b"\n"):
        found = [_fields_of(line) for line in data.splitlines()]  # an unusual line: the slow way
    stamps = [stamp for stamp, _ in found]
    sessions = {_decode_string(raw) for raw in {raw for _, raw in found if raw}}  # each distinct id once
    first = line_sequence(data[: data.index(b"\n")])
    last = line_sequence(data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1])
    return SegmentIndex(
        first,
        last,
        min(stamps).decode(),
        max(stamps).decode(),
        sessions if len(sessions) <= MAX_CORRELATIONS else None,
        info.st_size,
        info.st_mtime_ns,
    )


def _fields_of(line: bytes) -> tuple[bytes, bytes]:
    """(timestamp, correlationId as the raw body of a JSON string, or b"") of one line, parsed whole."""
    record = json.loads(line)
    correlation = record.get("correlationId")
    raw = json.dumps(correlation)[1:-1].encode() if isinstance(correlation, str) else b""
    return str(record["timestamp"]).encode(), raw


def _decode_string(raw: bytes) -> str:
    return str(json.loads(b'"' + raw + b'"')) if b"\\" in raw else raw.decode("utf-8", "replace")


def _load(path: Path, segment: Path) -> SegmentIndex | None:
    try:
        data = json.loads(path.read_bytes())
        info = segment.stat()
        if data["version"] != VERSION or data["size"] != info.st_size or data["mtimeNs"] != info.st_mtime_ns:
            return None
        correlations = data["correlations"]
        return SegmentIndex(
            data["firstSequence"],
            data["lastSequence"],
            data["oldest"],
            data["newest"],
            set(correlations) if correlations is not None else None,
            data["size"],
            data["mtimeNs"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def for_segment(index_dir: Path, segment: Path) -> SegmentIndex:
    """The index of a sealed segment: from its file if still valid, else built and saved."""
    path = index_dir / f"{segment.name}.json"
    found = _load(path, segment)
    if found is not None:
        return found
    built = build(segment)
    try:
        index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        durable.write_atomically(path, json.dumps(built.to_json()).encode(), fsync=False)
    except OSError:
        pass  # a read-only or full disk: answer from the built index, try again next time
    return built


def forget(index_dir: Path, segment: Path) -> None:
    """Drop the index of a segment that retention removed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(index_dir / f"{segment.name}.json")
