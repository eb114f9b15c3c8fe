"""The memory backend: records in a list, for tests and programs that embed the bus."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from elsabro.core.clock import now_iso
from elsabro.store.base import Cut, Removal, Tail, line_hash
from elsabro.store.query import Query


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
