"""The default store: JSON Lines segments on the project's disk (the format is in segments.py).

Writes go to the newest segment with one `write` and one `fdatasync` per group; a new
segment starts once the current one passes `segment_max_bytes`. A disk that fills up
mid-write is not a broken log: the partial write is cut off again, the group is refused
with DiskFull, and the next group tries again, so writing resumes when space returns.
Any other write error, and every fsync error, is left to the log to stop on (fail closed).

Retention removes whole sealed segments, oldest first, optionally keeping a gzip copy in
`.elsabro/archive/`, and appends what it removed to `events/removed.jsonl` so that
`elsabro verify` can check the chain from the first record that is left.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from elsabro.core import descriptors, durable
from elsabro.core.clock import now_iso
from elsabro.core.errors import DiskFull, OutOfDescriptors, ProjectError, ProjectMoved
from elsabro.store import index, segments
from elsabro.store.base import GENESIS_HASH, Cut, Removal, Tail, archive_lines, line_hash, line_sequence

if TYPE_CHECKING:
    from elsabro.core.settings import Settings
    from elsabro.store.query import Query

log = logging.getLogger("elsabro.log")

REMOVALS_FILE = "removed.jsonl"
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)
# Never followed: a symlink here could point a project's log (or its reads) anywhere.
NO_SYMLINKS = (Path(".elsabro"), Path(".elsabro") / "events")


def refuse_symlinks(project_dir: Path) -> None:
    """ProjectError if `.elsabro` or `.elsabro/events` is a symbolic link."""
    for name in NO_SYMLINKS:
        if (project_dir / name).is_symlink():
            raise ProjectError(
                f"{project_dir / name} is a symbolic link; elsabro does not follow it "
                "(it could put the log anywhere): make it a directory"
            )


def read_removals(events_dir: Path) -> list[Removal]:
    """The records of what retention removed from a log, oldest first."""
    try:
        data = (events_dir / REMOVALS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    return [Removal.from_json(json.loads(line)) for line in data.splitlines() if line.strip()]


def chain_start(events_dir: Path) -> tuple[int, str]:
    """Where a log's chain starts: sequence 1 at genesis, or right after what retention removed.

    Segments missing with no record of their removal count as genesis: verify reports the gap.
    """
    found = segments.list_segments(events_dir)
    if found and found[0][0] > 1:
        for removal in reversed(read_removals(events_dir)):
            if removal.last_sequence == found[0][0] - 1:
                return found[0][0], removal.last_hash
    return 1, GENESIS_HASH


def _identity(path: Path) -> tuple[int, int] | None:
    """A directory's (device, inode), None if it is gone: what tells a replaced directory apart."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


class FileStore:
    """A project's log as segment files under `events_dir`."""

    def __init__(self, events_dir: Path, settings: Settings) -> None:
        self.events_dir = events_dir
        self.index_dir = events_dir.parent / "index"
        self.settings = settings
        self._fd: int | None = None
        self._size = 0
        self._dir_id: tuple[int, int] | None = None  # the events directory written to
        self._positions = segments.Positions()  # consumers reading on from where they stopped

    def open(self, keep_recent: int) -> Tail:
        self.events_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_id = _identity(self.events_dir)
        tail = segments.recover(self.events_dir, keep_recent, chain_start(self.events_dir)[1])
        if tail.segment is not None:
            self._open_segment(tail.segment)
        return tail

    # -- writing -------------------------------------------------------------------------

    def write(self, lines: Sequence[bytes], first_sequence: int) -> None:
        if self._fd is None or self._size >= self.settings.segment_max_bytes:
            self._roll(first_sequence)
        fd = self._fd
        assert fd is not None
        if os.fstat(fd).st_nlink == 0:  # the segment was deleted: nothing goes into a file no one sees
            raise ProjectMoved(f"{self.events_dir} was removed while open; it is opened again")
        data = b"\n".join(lines) + b"\n"
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            if exc.errno not in _SPACE_ERRORS:
                raise
            os.ftruncate(fd, self._size)  # cut the partial write: the log is as acknowledged
            raise DiskFull(f"no space left to write {self.events_dir}; retry when space is freed") from None
        os.fdatasync(fd)
        self._size += len(data)

    def _roll(self, first_sequence: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if _identity(self.events_dir) != self._dir_id:  # a segment there would start a second chain
            raise ProjectMoved(f"{self.events_dir} was removed or replaced; it is opened again")
        path = self.events_dir / segments.segment_name(first_sequence)
        try:
            descriptors.with_spares(lambda: self._open_segment(path))
            descriptors.with_spares(lambda: durable.fsync_dir(self.events_dir))
        except OSError as exc:
            self.close()  # not written to before its directory entry is durable
            if exc.errno in _SPACE_ERRORS:
                raise DiskFull(f"no space left to start a segment in {self.events_dir}") from None
            if descriptors.exhausted(exc):  # not the log's fault: the next write tries again
                raise OutOfDescriptors(
                    f"no file descriptor left to start a segment in {self.events_dir}"
                ) from None
            raise

    def _open_segment(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd, self._size = fd, os.fstat(fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading -------------------------------------------------------------------------

    def read(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        return segments.read_lines(self.events_dir, after, upto, self._positions)

    def read_backwards(self, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        return segments.read_lines_backwards(self.events_dir, after, upto)

    def candidates(self, query: Query, upto: int | None, newest_first: bool) -> Iterator[tuple[int, bytes]]:
        """Records of every segment the query may match; sealed segments are ruled out by index."""
        chosen = self._segments_for(query, upto)
        needles = query.needles()  # a bytes test per line before any other work on it
        for path in reversed(chosen) if newest_first else chosen:
            lines = (line for line in segments.iter_lines(path) if all(n in line for n in needles))
            in_range = (
                (s, line)
                for line in lines
                if query.after_sequence < (s := line_sequence(line)) and (upto is None or s <= upto)
            )
            yield from reversed(list(in_range)) if newest_first else in_range

    def _segments_for(self, query: Query, upto: int | None) -> list[Path]:
        found = segments.list_segments(self.events_dir)
        bounded = query.since is not None or query.until is not None or query.correlation_id is not None
        chosen = []
        for position, (first, path) in enumerate(found):
            sealed = position + 1 < len(found)
            if sealed and found[position + 1][0] <= query.after_sequence + 1:
                continue  # wholly before the start
            if upto is not None and first > upto:
                break
            if sealed and bounded:
                entry = index.for_segment(self.index_dir, path)
                if not entry.may_match(query.since, query.until, query.correlation_id):
                    continue
            chosen.append(path)
        return chosen

    # -- retention -------------------------------------------------------------------------

    def removals(self) -> list[Removal]:
        return read_removals(self.events_dir)

    def retire(self, cut: Cut, archive_dir: Path | None) -> Removal | None:
        """Remove the oldest sealed segments the cut allows; never the one being written."""
        doomed: list[tuple[Path, index.SegmentIndex]] = []
        for _, path in segments.list_segments(self.events_dir)[:-1]:
            entry = index.for_segment(self.index_dir, path)
            if not cut.removable_through(entry.last_sequence, entry.newest):
                break
            doomed.append((path, entry))
        if not doomed:
            return None
        last = segments.last_line(doomed[-1][0])
        assert last is not None
        archived = None
        if archive_dir is not None:
            for path, _ in doomed:
                archived = str(archive_lines(archive_dir, path.name, list(segments.iter_lines(path))).parent)
        removal = Removal(
            doomed[0][1].first_sequence,
            doomed[-1][1].last_sequence,
            line_hash(last),
            now_iso(),
            archived,
        )
        # The record first: a crash before the unlinks leaves segments that the next run removes again.
        durable.append(self.events_dir / REMOVALS_FILE, json.dumps(removal.to_json()).encode() + b"\n")
        for path, _ in doomed:
            path.unlink()
            index.forget(self.index_dir, path)
        durable.fsync_dir(self.events_dir)
        log.info(
            "retention removed sequences %d..%d of %s",
            removal.first_sequence,
            removal.last_sequence,
            self.events_dir,
        )
        return removal
