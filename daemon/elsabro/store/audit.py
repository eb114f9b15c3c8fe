"""Checking the log's hash chain (`elsabro verify`) and repairing damage (`elsabro repair`).

`verify` reads every segment in order and checks that each line is a complete JSON
record, that sequences run without a gap, and that each record's `prevHash` is the
SHA-256 of the line before it. It names the first sequence where the log was edited, had
a record removed, was reordered, or lost part of a segment. It cannot see a change to
the very last record, nor a rewrite of the whole tail by someone who recomputes hashes.

`repair` is for the damage `verify` (or the daemon) finds: it moves the first damaged
record and everything after it into quarantine files beside the segments (nothing is
deleted), cuts the log there so it verifies again, and reports which sequences it took
out. A batch is kept or dropped whole, here as in the daemon's recovery (segments.py):
damage inside a multi-event batch moves the cut back to the batch's first record, so
every record repair leaves is one the next daemon start keeps. Run it with the daemon
stopped; the CLI stops it first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from elsabro.core.errors import UsageError
from elsabro.core.settings import Settings
from elsabro.store.backends import for_project
from elsabro.store.base import GENESIS_HASH, Store, line_hash
from elsabro.store.files import FileStore, chain_start, refuse_symlinks
from elsabro.store.segments import list_segments, quarantine


@dataclass
class Finding:
    """Where the log stops being intact."""

    sequence: int  # the sequence expected at the damage (the first one not proven intact)
    problem: str
    segment: Path
    offset: int  # byte offset of the damaged line in its segment


@dataclass
class Report:
    records: int = 0
    segments: int = 0
    last_sequence: int = 0
    finding: Finding | None = None

    @property
    def intact(self) -> bool:
        return self.finding is None


def _problem(record: object, expected_sequence: int, expected_hash: str) -> str | None:
    if not isinstance(record, dict) or not isinstance(record.get("sequence"), int):
        return "not a record (damaged bytes)"
    sequence = record["sequence"]
    if sequence != expected_sequence:
        return f"sequence {sequence} where {expected_sequence} was expected (records missing or reordered)"
    if record.get("prevHash") != expected_hash:
        return EDITED
    return None


EDITED = "edited: its hash no longer matches the next record's prevHash"


def verify(events_dir: Path) -> Report:
    report = Report()
    expected_sequence, expected_hash = chain_start(events_dir)
    previous: tuple[Path, int] | None = None  # where the last intact-looking record starts
    for first, path in list_segments(events_dir):
        report.segments += 1
        offset = 0
        if first != expected_sequence:
            what = "missing" if first > expected_sequence else "overlapping"
            report.finding = Finding(
                expected_sequence, f"segment {path.name} starts at {first}: records {what}", path, 0
            )
            return report
        for line in _lines_with_tail(path):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            problem = _problem(record, expected_sequence, expected_hash)
            if problem == EDITED and previous is not None:  # the damage is in the record before
                report.finding = Finding(expected_sequence - 1, problem, *previous)
                return report
            if problem is not None:
                report.finding = Finding(expected_sequence, problem, path, offset)
                return report
            previous = (path, offset)
            expected_sequence, expected_hash = expected_sequence + 1, line_hash(line)
            report.records += 1
            offset += len(line) + 1
    report.last_sequence = expected_sequence - 1
    return report


def verify_project(project: Path, settings: Settings) -> Report:
    """Verify a project's log, whichever backend its config names (a symlinked log refused)."""
    refuse_symlinks(project)
    backend, store = for_project(project, settings)
    if backend == "memory":
        raise UsageError("the memory store keeps nothing on disk: there is nothing to verify")
    if isinstance(store, FileStore):
        return verify(store.events_dir)
    try:
        return verify_store(store)
    finally:
        store.close()


def verify_store(store: Store) -> Report:
    """The same check over any backend's records (one chain, whatever keeps the lines)."""
    report = Report()
    removals = store.removals()
    expected_sequence, expected_hash = (
        (removals[-1].last_sequence + 1, removals[-1].last_hash) if removals else (1, GENESIS_HASH)
    )
    where = Path(getattr(store, "path", "<memory>"))
    for _, line in store.read():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        problem = _problem(record, expected_sequence, expected_hash)
        if problem is not None:
            # An edited record shows in the next one's prevHash: name the edited one.
            at = expected_sequence - 1 if problem == EDITED and report.records else expected_sequence
            report.finding = Finding(at, problem, where, 0)
            return report
        expected_sequence, expected_hash = expected_sequence + 1, line_hash(line)
        report.records += 1
    report.last_sequence = expected_sequence - 1
    return report


def _lines_with_tail(path: Path) -> list[bytes]:
    """Every line of a segment, a final line without its newline included (a truncation)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


@dataclass
class RepairReport:
    finding: Finding | None
    removed_sequences: list[int] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)
    batch_start: int | None = None  # the first sequence of a batch the damage cut, if it cut one


def repair(events_dir: Path) -> RepairReport:
    """Quarantine everything from the first damage on (its whole batch), so that the log verifies again."""
    report = verify(events_dir)
    result = RepairReport(report.finding)
    if report.finding is None:
        return result
    found = report.finding
    for _, path in list_segments(events_dir):
        if path.name < found.segment.name:
            continue
        data = path.read_bytes()
        cut = 0
        if path == found.segment:
            cut, result.batch_start = _batch_start(data, found.offset, found.sequence)
        result.removed_sequences.extend(_sequences(data[cut:]))
        result.quarantined.append(quarantine(path, data, cut))
    return result


def _batch_start(data: bytes, offset: int, damaged_sequence: int) -> tuple[int, int | None]:
    """Where to cut so no batch is left in part: the start of the batch reaching the damage.

    The records of a batch are written together, in one segment, each with `batchLast`
    (the batch's last sequence); the ones before the damage whose batch reaches it go too.
    """
    cut, first = offset, None
    before = data[:offset].split(b"\n")[:-1]
    for line in reversed(before):
        try:
            record = json.loads(line)
        except ValueError:
            break
        batch_last = record.get("batchLast") if isinstance(record, dict) else None
        if not isinstance(batch_last, int) or batch_last < damaged_sequence:
            break
        cut -= len(line) + 1
        first = record.get("sequence")
    return cut, first if isinstance(first, int) else None


def _sequences(data: bytes) -> list[int]:
    found = []
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("sequence"), int):
            found.append(record["sequence"])
    return found
