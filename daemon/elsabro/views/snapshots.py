"""Views over a whole log, resumed from snapshots: `elsabro sessions|tasks|agents|stats`.

The projections (projections.py) are folds; this runs them over a project's log. A view
loads its snapshot `<dir>/<name>.json`, checks its version and that the log still holds
the record the snapshot ends with (`elsabro repair` can replace a log's tail), folds what
came after and saves a new snapshot once `frequency` (`events.store.snapshots.frequency`)
or more records were folded. Any doubt about a snapshot throws it away and folds the
whole log: deleting one never changes an answer, only its cost. `rebuild` is the seed's
rebuildProjection: the whole log, no snapshot.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from elsabro.core.durable import write_atomically
from elsabro.core.errors import NotFound
from elsabro.views.fields import Record, Row
from elsabro.views.projections import PROJECTIONS, Projection, ReadAfter


class _StaleSnapshot(ValueError):
    """The log no longer holds the record a snapshot ends with."""


# What resuming from a snapshot that parses but is not usable raises.
_SNAPSHOT_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def _text(value: Any) -> str | None:
    """An event id as stored (ids are strings; anything else counts as absent)."""
    return value if isinstance(value, str) else None


def _projection(name: str) -> type[Projection]:
    if name not in PROJECTIONS:
        raise NotFound(f"no view {name!r} (known: {', '.join(PROJECTIONS)})")
    return PROJECTIONS[name]


def _parse(line: bytes | str) -> Record | None:
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    return record if isinstance(record, dict) else None


def rebuild(name: str, lines: Iterable[bytes | str]) -> list[Row]:
    """The rows of view `name` folded from every record line, with no snapshot."""
    projection = _projection(name)()
    for line in lines:
        if (record := _parse(line)) is not None:
            projection.apply(record)
    return projection.rows()


def _load_snapshot(path: Path, cls: type[Projection]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != cls.version:
        return None
    sequence = data.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        return None
    return data


def _check_still_there(lines: Iterator[tuple[int, bytes]], sequence: int, last_id: str | None) -> None:
    first = next(lines, None)
    record = _parse(first[1]) if first is not None else None
    found = _text(record.get("id")) if record is not None else None
    if first is None or first[0] != sequence or found != last_id:
        raise _StaleSnapshot(f"record {sequence} is not the one the snapshot folded")


def _catch_up(
    projection: Projection, snapshot: dict[str, Any] | None, read_after: ReadAfter, path: Path, frequency: int
) -> list[Row]:
    sequence = snapshot["sequence"] if snapshot else 0
    last_id = _text(snapshot.get("id")) if snapshot else None
    # Read from the snapshot's own last record, to check the log still holds it.
    lines = iter(read_after(sequence - 1 if sequence else 0))
    if sequence:
        _check_still_there(lines, sequence, last_id)
    folded = 0
    for sequence, line in lines:  # noqa: B007 (the last one is the new snapshot's)
        record = _parse(line)
        if record is not None:
            projection.apply(record)
        last_id = _text(record.get("id")) if record is not None else None
        folded += 1
    if folded and folded >= frequency:
        head = {"version": projection.version, "sequence": sequence, "id": last_id}
        data = json.dumps({**head, "state": projection.state()}, separators=(",", ":")).encode()
        with contextlib.suppress(OSError):  # unsaved, a cache costs the next call time, never an answer
            write_atomically(path, data, fsync=False)
    return projection.rows()


def view(name: str, read_after: ReadAfter, snapshot_dir: Path, frequency: int) -> list[Row]:
    """The rows of view `name`, resumed from its snapshot in `snapshot_dir` when it is usable.

    `read_after(s)` yields (sequence, record line) of every record after sequence s, in
    order. A new snapshot is saved when `frequency` or more records were folded.
    """
    cls = _projection(name)
    path = snapshot_dir / f"{name}.json"
    snapshot = _load_snapshot(path, cls)
    if snapshot is not None:
        try:
            return _catch_up(cls.from_state(snapshot.get("state")), snapshot, read_after, path, frequency)
        except _SNAPSHOT_ERRORS:
            pass  # it looked like a snapshot but cannot be resumed from: fold the whole log
    return _catch_up(cls(), None, read_after, path, frequency)
