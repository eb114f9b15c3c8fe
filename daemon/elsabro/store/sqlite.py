"""The sqlite store: the same lines in one indexed table, for large logs.

Each record's line is stored as is (so the hash chain is the file store's), beside the
columns queries filter on: time, session and id are indexed, so a bounded query never
reads the whole table. WAL mode with `synchronous=FULL` makes a committed transaction
durable before `write` returns, which is what an acknowledgement promises.

Writes go through one connection owned by the store; every read opens its own
connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elsabro.core.clock import now_iso
from elsabro.core.errors import DiskFull
from elsabro.store.base import Cut, Removal, Tail, archive_lines, line_hash, spool_id

if TYPE_CHECKING:
    from elsabro.store.query import Query

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    sequence INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    correlation TEXT,
    line BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records (timestamp);
CREATE INDEX IF NOT EXISTS records_correlation ON records (correlation);
CREATE INDEX IF NOT EXISTS records_id ON records (id);
CREATE TABLE IF NOT EXISTS removals (last_sequence INTEGER PRIMARY KEY, record TEXT NOT NULL);
"""
_READ_CHUNK = 2_000


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


class SqliteStore:
    """A project's log as rows of `path` (an sqlite database)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _writer(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)
            self._db = _connect(self.path)
            self._db.executescript(_SCHEMA)
        return self._db

    def open(self, keep_recent: int) -> Tail:
        with self._lock:
            self._writer()
        recent = list(self.read_backwards())[:keep_recent] if keep_recent else []
        recent.reverse()
        if not recent:
            return Tail.after(self.removals())
        tail = Tail(recent[-1][0], line_hash(recent[-1][1]), recent=recent)
        tail.spool_ids = {found for _, line in recent if (found := spool_id(line)) is not None}
        return tail

    def write(self, lines: Sequence[bytes], first_sequence: int) -> None:
        rows = []
        for offset, line in enumerate(lines):
            record = json.loads(line)
            rows.append(
                (first_sequence + offset, record["id"], record["timestamp"], record["correlationId"], line)
            )
        with self._lock:
            db = self._writer()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if "full" in str(exc):
                    raise DiskFull(f"no space left to write {self.path}; retry when space is freed") from None
                raise OSError(f"sqlite: {exc}") from None

    def _select(self, where: str, args: list[Any], newest_first: bool) -> Iterator[tuple[int, bytes]]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT sequence, line FROM records WHERE {where} ORDER BY sequence {order}"
        connection = _connect(self.path)
        try:
            cursor = connection.execute(sql, args)
            while rows := cursor.fetchmany(_READ_CHUNK):
                yield from ((sequence, bytes(line)) for sequence, line in rows)
        finally:
            connection.close()

    def read(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        return self._select(*_bounds(after, upto), newest_first=False)

    def read_backwards(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        return self._select(*_bounds(after, upto), newest_first=True)

    def candidates(self, query: Query, upto: int | None, newest_first: bool) -> Iterator[tuple[int, bytes]]:
        where, args = _bounds(query.after_sequence, upto)
        for column, operator, value in (
            ("timestamp", ">=", query.since),
            ("timestamp", "<=", query.until),
            ("correlation", "=", query.correlation_id),
            ("id", "=", query.event_id),
        ):
            if value is not None:
                where += f" AND {column} {operator} ?"
                args.append(value)
        return self._select(where, args, newest_first)

    def removals(self) -> list[Removal]:
        with self._lock:
            rows = self._writer().execute("SELECT record FROM removals ORDER BY last_sequence").fetchall()
        return [Removal.from_json(json.loads(record)) for (record,) in rows]

    def retire(self, cut: Cut, archive_dir: Path | None) -> Removal | None:
        """Remove the longest prefix of rows the cut allows, in one transaction."""
        doomed: list[tuple[int, bytes]] = []
        for sequence, line in self.read():
            if not cut.removable_through(sequence, json.loads(line)["timestamp"]):
                break
            doomed.append((sequence, line))
        if not doomed:
            return None
        first, last = doomed[0][0], doomed[-1][0]
        archived = None
        if archive_dir is not None:
            name = f"records-{first:020d}-{last:020d}"
            archived = str(archive_lines(archive_dir, name, [line for _, line in doomed]))
        removal = Removal(first, last, line_hash(doomed[-1][1]), now_iso(), archived)
        with self._lock:
            db = self._writer()
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM records WHERE sequence <= ?", (last,))
            db.execute("INSERT INTO removals VALUES (?, ?)", (last, json.dumps(removal.to_json())))
            db.execute("COMMIT")
        return removal

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _bounds(after: int, upto: int | None) -> tuple[str, list[Any]]:
    if upto is None:
        return "sequence > ?", [after]
    return "sequence > ? AND sequence <= ?", [after, upto]
