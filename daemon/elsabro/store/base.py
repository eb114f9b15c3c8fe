"""Where a project's records live: one small interface and the backends behind it.

The log (log.py) owns everything that makes a record a record: sequences, the hash
chain, redaction, group commit. A store only keeps the finished lines, in sequence
order, and gives them back. That keeps every backend small and makes them all speak
the same bytes, so `elsabro verify` checks one chain whatever the backend.

    file    JSON Lines segments under `.elsabro/events` (files.py), the default
    sqlite  one indexed table in `.elsabro/events/events.db` (sqlite.py), for large logs
    memory  a list in this process (memory.py), for tests and embedding; nothing survives

Every method blocks; the log runs them in its I/O thread. `write` returns only once the
lines are durable (for the backends that are durable at all). `candidates` may return
more than a query matches (the caller filters): it is how a backend uses its index.
Retention removes a prefix of the log and remembers what it removed (`Removal`) so
that the chain still verifies from there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from elsabro.core import durable
from elsabro.store.query import Query

GENESIS_HASH = "0" * 64


@dataclass
class Tail:
    """Where a recovered log ends, and what the writer needs to go on from there."""

    sequence: int = 0
    hash: str = GENESIS_HASH
    segment: Path | None = None
    recent: list[tuple[int, bytes]] = field(default_factory=list)
    spool_ids: set[str] = field(default_factory=set)
    quarantined_bytes: int = 0
    quarantine_path: Path | None = None

    @classmethod
    def after(cls, removals: list[Removal]) -> Tail:
        """The tail of a store that holds no records: genesis, or where retention stopped."""
        if not removals:
            return cls()
        return cls(removals[-1].last_sequence, removals[-1].last_hash)


@dataclass(frozen=True)
class Cut:
    """What retention may remove: a prefix of the log, never at or past `keep_from`."""

    keep_from: int  # the first sequence that must stay (the oldest one a consumer still needs)
    max_events: int | None = None  # keep at least this many of the newest events
    older_than: str | None = None  # a UTC ISO time: events before it may go
    head: int = 0  # the last committed sequence

    def removable_through(self, last_sequence: int, newest_time: str) -> bool:
        """May a run of records ending at `last_sequence`, none newer than `newest_time`, go?"""
        if last_sequence >= self.keep_from:
            return False
        by_count = self.max_events is not None and last_sequence <= self.head - self.max_events
        by_age = self.older_than is not None and newest_time < self.older_than
        return by_count or by_age


@dataclass
class Removal:
    """A record of records removed by retention; the chain resumes after `last_sequence`."""

    first_sequence: int
    last_sequence: int
    last_hash: str  # the hash of the last removed line: the next record's prevHash
    removed_at: str
    archive: str | None = None  # where they were archived, if they were

    def to_json(self) -> dict[str, Any]:
        return {
            "firstSequence": self.first_sequence,
            "lastSequence": self.last_sequence,
            "lastHash": self.last_hash,
            "removedAt": self.removed_at,
            "archive": self.archive,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Removal:
        return cls(
            data["firstSequence"],
            data["lastSequence"],
            data["lastHash"],
            data["removedAt"],
            data.get("archive"),
        )


class Store(Protocol):
    """The interface every backend implements (see the contract tests in tests/store/test_store.py)."""

    def open(self, keep_recent: int) -> Tail:
        """Recover and return where the log ends (the last `keep_recent` records included)."""
        ...

    def write(self, lines: Sequence[bytes], first_sequence: int) -> None:
        """Append lines with sequences first_sequence, first_sequence + 1, ...; durable on return."""
        ...

    def read(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(sequence, line) for after < sequence <= upto, oldest first."""
        ...

    def read_backwards(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        """The same, newest first."""
        ...

    def candidates(self, query: Query, upto: int | None, newest_first: bool) -> Iterator[tuple[int, bytes]]:
        """A superset of the query's matches, in order, skipping what an index rules out."""
        ...

    def removals(self) -> list[Removal]:
        """What retention removed so far, oldest first."""
        ...

    def retire(self, cut: Cut, archive_dir: Path | None) -> Removal | None:
        """Remove the oldest records the cut allows (archived under archive_dir if given)."""
        ...

    def close(self) -> None: ...


def line_hash(line: bytes) -> str:
    """The chain hash of one record: SHA-256 of its line without the newline."""
    return hashlib.sha256(line).hexdigest()


def line_sequence(line: bytes) -> int:
    """The sequence of a record line without parsing all of it.

    `sequence` is written after `payload` and only flat fields follow it, and a quote
    inside a JSON string is always escaped: the last `"sequence":` is the record's own.
    """
    start = line.rindex(b'"sequence":') + 11
    end = line.index(b",", start)
    return int(line[start:end])


def archive_lines(archive_dir: Path, name: str, lines: Sequence[bytes]) -> Path:
    """Write removed lines, compressed, to `archive_dir/name.jsonl.gz` (owner-only)."""
    archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = archive_dir / f"{name}.jsonl.gz"
    durable.write_atomically(target, gzip.compress(b"".join(line + b"\n" for line in lines)))
    return target


def spool_id(line: bytes) -> str | None:
    """The spool id a drained hook event carries in its metadata, if any."""
    if b'"spoolId"' not in line:
        return None
    metadata = json.loads(line).get("metadata")
    value = metadata.get("spoolId") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None
