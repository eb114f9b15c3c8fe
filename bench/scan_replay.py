"""Scan and replay: a large log written straight to segment files, then read back.

Generating a million events through the daemon would take minutes of the run and
measure ingest again; instead the segments are written directly, byte for byte in the
format the daemon writes (daemon/elsabro/log.py `_write_group`): the same key order
and separators, a gapless sequence, the prevHash chain, 16 MiB segments. The daemon
recovers the log when it opens the project, and the benchmark then appends one event
through it and checks that it continues the chain: a format slip fails the run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import Figure, Target, World
from elsabro import segments, store

SECTION = "scan"

# Figures the issue asks for whose subject does not exist yet: named, never faked.
NOT_YET_MEASURABLE = [
    {"name": "replay_events_per_s", "why": "replay to handlers is not built yet"},
    {
        "name": "handler_catch_up_s",
        "why": "durable cursors exist now, but no run here yet stops a handler and times its catch-up",
    },
]

# (topic, type, hook event, tool) of the synthetic events: a typical mix of hook traffic.
KINDS = [
    ("tool.bash.started", "ToolBashStarted", "PreToolUse", "Bash"),
    ("tool.bash.completed", "ToolBashCompleted", "PostToolUse", "Bash"),
    ("tool.read.completed", "ToolReadCompleted", "PostToolUse", "Read"),
    ("prompt.submitted", "PromptSubmitted", "UserPromptSubmit", "none"),
]
BASE_EPOCH_S = 1_790_000_000  # 2026-09-21: one synthetic event per millisecond from here
TARGET_LINE_BYTES = 500


@dataclass
class GeneratedLog:
    events_dir: Path
    count: int
    last_hash: str
    sessions: list[str]
    per_session: Counter[int]
    elapsed_s: float


def _dumps(record: object) -> bytes:
    """How the daemon serialises a record (log.py `_dumps`)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _timestamps() -> Iterator[str]:
    """UTC ISO timestamps one millisecond apart, as model.format_time prints them."""
    for second in itertools.count(BASE_EPOCH_S):
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        for ms in range(1000):
            yield f"{prefix}.{ms:03d}Z"


def _payload_json(kind: tuple[str, str, str, str], padding: int) -> str:
    """A hook-like payload; `{sid}` is filled in per event (session ids are plain hex and dashes)."""
    _, _, hook_event, tool = kind
    payload = {
        "session_id": "{sid}",
        "cwd": "/home/dev/work/demo",
        "hook_event_name": hook_event,
        "tool_name": tool,
        "tool_input": {"command": "ls -la", "description": "list files"},
        "tool_response": {"stdout": "x" * padding, "stderr": ""},
    }
    return (
        json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        .replace("{", "{{")
        .replace("}", "}}")
        .replace("{{sid}}", "{sid}")
    )


def _templates(project: Path) -> list[str]:
    """One format string per kind of event, padded so that a line is ~TARGET_LINE_BYTES."""
    project_json = json.dumps(str(project), ensure_ascii=False).replace("{", "{{").replace("}", "}}")
    templates = []
    for kind in KINDS:
        topic, type_, hook_event, tool = kind
        head = (
            f'{{{{"id":"evt_01JBENCH{{index:018d}}","type":"{type_}","topic":"{topic}",'
            f'"timestamp":"{{ts}}","source":"claude-code","correlationId":"{{sid}}","causationId":null,'
            f'"metadata":{{{{"hookEvent":"{hook_event}","projectDir":{project_json},"sessionId":"{{sid}}",'
            f'"toolName":"{tool}","toolUseId":"toolu_{{index:020d}}"}}}},"payload":'
        )
        tail = ',"sequence":{index},"storedAt":"{ts}","prevHash":"{chain}"}}'
        sample = (head + _payload_json(kind, 0) + tail).format(
            index=1, ts="x" * 24, sid="s" * 36, chain="0" * 64
        )
        padding = max(0, TARGET_LINE_BYTES - len(sample))
        templates.append(head + _payload_json(kind, padding) + tail)
    return templates


class _SegmentWriter:
    """Appends lines to segments named by their first sequence, rolling as log.py does.

    log.py rolls before a write once the segment has reached its size, so a segment
    ends slightly past the limit: the same here, one record per write.
    """

    def __init__(self, events_dir: Path, max_bytes: int) -> None:
        self.events_dir = events_dir
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._bytes = 0
        self._buffer: list[bytes] = []
        self._buffered = 0

    def write(self, sequence: int, line: bytes) -> None:
        if self._fd is None or self._bytes >= self.max_bytes:
            self._roll(sequence)
        self._buffer.append(line)
        self._buffered += len(line)
        self._bytes += len(line)
        if self._buffered >= 1 << 20:  # large writes: the generator is meant to be quick
            self._flush()

    def _roll(self, sequence: int) -> None:
        self.close()
        path = self.events_dir / segments.segment_name(sequence)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._bytes = 0

    def _flush(self) -> None:
        if self._fd is not None and self._buffer:
            data = memoryview(b"".join(self._buffer))
            while data:
                data = data[os.write(self._fd, data) :]
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> _SegmentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def generate(project: Path, count: int, sessions: int, segment_max_bytes: int, seed: int = 7) -> GeneratedLog:
    """Write `count` events over `sessions` sessions as the daemon would have stored them."""
    started = time.perf_counter()
    events_dir = project / ".elsabro" / "events"
    events_dir.mkdir(mode=0o700, parents=True)
    rng = random.Random(seed)
    session_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(sessions)]
    templates = _templates(project)
    per_session: Counter[int] = Counter()
    chain = store.GENESIS_HASH
    stamps = _timestamps()
    with _SegmentWriter(events_dir, segment_max_bytes) as out:
        for index in range(1, count + 1):
            session = rng.randrange(sessions)
            per_session[session] += 1
            line = (
                templates[index % len(templates)]
                .format(index=index, ts=next(stamps), sid=session_ids[session], chain=chain)
                .encode()
            )
            if index <= len(templates) and _dumps(json.loads(line)) != line:
                raise RuntimeError(f"generated record differs from what the daemon writes: {line!r}")
            chain = segments.line_hash(line)
            out.write(index, line + b"\n")
    return GeneratedLog(events_dir, count, chain, session_ids, per_session, time.perf_counter() - started)


def _scan_once(events_dir: Path, max_sequence: int | None = None) -> float:
    """Events/s of reading every record and parsing it, as a reader of the files would."""
    loads = json.loads
    count = 0
    started = time.perf_counter()
    for _, line in segments.read_lines(events_dir, 0, max_sequence):
        loads(line)
        count += 1
    return count / (time.perf_counter() - started)


def _check_chain(world: World, project: Path, log: GeneratedLog) -> float:
    """Append one event through the daemon: it must continue the generated chain. Returns open ms."""
    started = time.perf_counter()
    stored = world.client(project).publish({"topic": "bench.chain.check"})
    open_ms = (time.perf_counter() - started) * 1000
    if stored["sequence"] != log.count + 1 or stored["prevHash"] != log.last_hash:
        raise RuntimeError(f"the daemon did not continue the generated log: {stored}")
    return open_ms


def _time_query(world: World, project: Path, params: dict[str, str], expected: int) -> float:
    started = time.perf_counter()
    lines = world.client(project).events(params)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(lines) != expected:
        raise RuntimeError(f"query {params} returned {len(lines)} records, expected {expected}")
    return elapsed_ms


def measure(
    world: World, count: int, scan_runs: int, query_runs: int, sessions: int = 1000
) -> tuple[list[Figure], list[str]]:
    """Generate, scan in this process, query through the daemon. Returns figures and notes."""
    project = world.project("scan")
    log = generate(project, count, sessions, world.settings.segment_max_bytes)
    segment_count = len(segments.list_segments(log.events_dir))
    open_ms = _check_chain(world, project, log)
    _scan_once(log.events_dir, max(1, count // 10))  # warm-up: page cache, code paths
    scans = [_scan_once(log.events_dir) for _ in range(scan_runs)]
    rng = random.Random(11)
    picked = rng.sample(range(sessions), query_runs + 1)  # the first is the warm-up
    session_ms = [
        _time_query(world, project, {"correlation": log.sessions[s]}, log.per_session[s]) for s in picked
    ][1:]
    last_ms = [_time_query(world, project, {"limit": "1"}, 1) for _ in range(query_runs + 1)][1:]
    events_per_session = log.count // sessions
    figures = [
        Figure(
            "scan_events_per_s",
            SECTION,
            "events/s",
            scans,
            Target(">=", 200_000),
            f"{count:,} events in {segment_count} segments: segments.read_lines + json.loads, in process",
        ),
        Figure(
            "session_query_ms",
            SECTION,
            "ms",
            session_ms,
            Target("<", 100),
            f"GET /v1/events?correlation=<one of {sessions} sessions, ~{events_per_session} events>",
        ),
        Figure(
            "last_event_query_ms",
            SECTION,
            "ms",
            last_ms,
            note="GET /v1/events?limit=1 (what `history --limit 1` asks) on the same log",
        ),
    ]
    notes = [
        f"scan log: {count:,} events of ~{TARGET_LINE_BYTES} bytes written directly in "
        f"{log.elapsed_s:.1f} s ({count / log.elapsed_s:,.0f} events/s), {segment_count} segments",
        f"first request to the scan project (recovery of its newest segment + 1 append): {open_ms:.0f} ms",
    ]
    return figures, notes
