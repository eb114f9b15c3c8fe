"""Where a project's records live: one small interface and the backends behind it.

The log (log.py) owns everything that makes a record a record: sequences, the hash
chain, redaction, group commit. A store only keeps the finished lines, in sequence
order, and gives them back. That keeps every backend small and makes them all speak
the same bytes, so `elsabro verify` checks one chain whatever the backend.

    file    JSON Lines segments under `.elsabro/events` (filestore.py), the default
    sqlite  one indexed table in `.elsabro/events/events.db` (sqlitestore.py), for large logs
    memory  a list in this process (below), for tests and embedding; nothing survives

Every method blocks; the log runs them in its I/O thread. `write` returns only once the
lines are durable (for the backends that are durable at all). `candidates` may return
more than a query matches (the caller filters): it is how a backend uses its index.
Retention removes a prefix of the log and remembers what it removed (`Removal`) so
that the chain still verifies from there.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .query import Query
    from .settings import Settings

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
    """The interface every backend implements (see the contract tests in tests/test_store.py)."""

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
    from . import durable

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


class MemoryStore:
    """Records in a list: for tests and for programs that embed the bus. Nothing survives."""

    def __init__(self) -> None:
        self._sequences: list[int] = []
        self._lines: list[bytes] = []
        self._removals: list[Removal] = []

    def open(self, keep_recent: int) -> Tail:
        if not self._lines:
            return Tail.after(self._removals)
        recent = list(zip(self._sequences[-keep_recent:], self._lines[-keep_recent:], strict=True))
        return Tail(self._sequences[-1], line_hash(self._lines[-1]), recent=recent)

    def write(self, lines: Sequence[bytes], first_sequence: int) -> None:
        self._sequences.extend(range(first_sequence, first_sequence + len(lines)))
        self._lines.extend(lines)

    def _range(self, after: int, upto: int | None) -> range:
        start = bisect.bisect_right(self._sequences, after)
        end = len(self._sequences) if upto is None else bisect.bisect_right(self._sequences, upto)
        return range(start, end)

    def read(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        for index in self._range(after, upto):
            yield self._sequences[index], self._lines[index]

    def read_backwards(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        for index in reversed(self._range(after, upto)):
            yield self._sequences[index], self._lines[index]

    def candidates(self, query: Query, upto: int | None, newest_first: bool) -> Iterator[tuple[int, bytes]]:
        read = self.read_backwards if newest_first else self.read
        return read(query.after_sequence, upto)

    def removals(self) -> list[Removal]:
        return list(self._removals)

    def retire(self, cut: Cut, archive_dir: Path | None) -> Removal | None:
        from .clock import now_iso

        count = 0
        for sequence, line in zip(self._sequences, self._lines, strict=True):
            if not cut.removable_through(sequence, json.loads(line)["timestamp"]):
                break
            count += 1
        if count == 0:
            return None
        removal = Removal(
            self._sequences[0], self._sequences[count - 1], line_hash(self._lines[count - 1]), now_iso()
        )
        del self._sequences[:count], self._lines[:count]
        self._removals.append(removal)
        return removal

    def close(self) -> None:
        pass


def for_project(project_dir: Path, settings: Settings) -> tuple[str, Store]:
    """The backend a project's config names and its store (the default if the config is invalid:
    the daemon reports an invalid config when it applies it)."""
    from .config import StoreConfig, load
    from .errors import ConfigError

    try:
        config = load(project_dir, settings.user_config_file).events.store
    except ConfigError:
        config = StoreConfig()
    return config.backend, open_store(project_dir, config.backend, config.path, settings)


def open_store(project_dir: Path, backend: str, path: str, settings: Settings) -> Store:
    """The store a project's config names (`events.store.backend` and `path`)."""
    directory = project_dir / path
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        from .sqlitestore import SqliteStore

        return SqliteStore(directory / "events.db")
    from .filestore import FileStore

    return FileStore(directory, settings)


__all__ = [
    "GENESIS_HASH",
    "Cut",
    "MemoryStore",
    "Removal",
    "Store",
    "Tail",
    "archive_lines",
    "for_project",
    "line_hash",
    "line_sequence",
    "open_store",
    "spool_id",
]
