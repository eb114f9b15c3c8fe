"""Scan, queries and replay on a large log written straight to segment files.

Generating a million events through the daemon would take minutes of the run and
measure ingest again; instead the segments are written directly, byte for byte in the
format the daemon writes (daemon/elsabro/store/log.py `_write_group`): the same key order
and separators, a gapless sequence, the prevHash chain, 16 MiB segments. The daemon
recovers the log when it opens the project, and the benchmark then appends one event
through it and checks that it continues the chain: a format slip fails the run.

The events are what the hook stores (daemon/elsabro/ingest/hooks.py): source `claude-code`,
the session id as correlationId, SessionStart/SessionEnd, prompts, and tool calls whose
start and finish share a `tool_use_id` (the finish carries `duration_ms` and is caused
by its start), so the views (`elsabro sessions`) have real rows to fold. Sessions run a
few at a time, their events interleaved, one after another through the log, as they do
in a project: a session's events sit in one or two segments, which is what the
per-segment index (daemon/elsabro/store/index.py) is for.

    .venv/bin/python bench/scan_replay.py [--quick]     this section alone, in its own world
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count as counting
from pathlib import Path
from typing import Any

from common import Figure, Target, World, timed_run, wait_until
from elsabro.store import base as store
from elsabro.store import segments
from elsabro.store.query import Query

SECTION = "scan"

# Figures the issue asks for whose subject does not exist yet: named, never faked.
NOT_YET_MEASURABLE = [
    {
        "name": "handler_catch_up_s",
        "why": "durable cursors exist now, but no run here yet stops a handler and times its catch-up",
    },
]

BASE_EPOCH_S = 1_790_000_000  # 2026-09-21: one synthetic event per millisecond from here
CONCURRENT_SESSIONS = 4  # sessions open at once, their events interleaved
PROJECT_CWD = "/home/dev/work/demo"
# What a session does between its SessionStart and its SessionEnd, over and over.
CYCLE = ("prompt", "bash.started", "bash.completed", "read.started", "read.completed")
# kind -> (topic, hook event, tool name or None)
KINDS: dict[str, tuple[str, str, str | None]] = {
    "start": ("session.started", "SessionStart", None),
    "end": ("session.ended", "SessionEnd", None),
    "prompt": ("prompt.submitted", "UserPromptSubmit", None),
    "bash.started": ("tool.bash.started", "PreToolUse", "Bash"),
    "bash.completed": ("tool.bash.completed", "PostToolUse", "Bash"),
    "read.started": ("tool.read.started", "PreToolUse", "Read"),
    "read.completed": ("tool.read.completed", "PostToolUse", "Read"),
}
# Placeholders in a record, and the str.format fields they become in its template. Numbers
# and nullable values are JSON strings at first, so their quotes go with the placeholder.
_FIELDS = {
    "@ID@": "{index:018d}",
    '"@SEQ@"': "{index}",
    "@TS@": "{ts}",
    "@SID@": "{sid}",
    "@CHAIN@": "{chain}",
    '"@CAUSE@"': "{cause}",
    "@USE@": "{use}",
    '"@DUR@"': "{dur}",
}

REPLAY_SUBSCRIPTION = "bench-replay"
REPLAY_OUTPUT = "replayed.jsonl"
# A replay through a subscription delivers one event at a time, and an append handler
# fdatasyncs each line: a million events would take minutes. Each run replays a window of
# the log instead (--from/--to), this fraction of it, from its middle; `--print` runs
# replay a larger window. The warm-up runs replay a tenth of that.
REPLAY_FRACTION = 100
PRINT_FRACTION = 10


@dataclass
class GeneratedLog:
    events_dir: Path
    count: int
    last_hash: str
    sessions: list[str]
    per_session: list[int]
    elapsed_s: float

    def time_of(self, sequence: int) -> str:
        """The timestamp of a generated record (one per millisecond from BASE_EPOCH_S)."""
        return _stamp(sequence - 1)


def _dumps(record: object) -> bytes:
    """How the daemon serialises a record (log.py `_dumps`)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _stamp(offset_ms: int) -> str:
    """The UTC ISO timestamp `offset_ms` after BASE_EPOCH_S, as model.format_time prints it."""
    second, ms = divmod(offset_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE_EPOCH_S + second)) + f".{ms:03d}Z"


def _timestamps() -> Iterator[str]:
    """UTC ISO timestamps one millisecond apart, as model.format_time prints them."""
    for second in counting(BASE_EPOCH_S):
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        for ms in range(1000):
            yield f"{prefix}.{ms:03d}Z"


def _payload(kind: str) -> dict[str, Any]:
    """The hook's own input for this kind of event: the fields of tests/fixtures, a few left out.

    Left out (transcript_path, prompt_id, effort): they would make the lines longer still
    than the ~880 bytes they are (the scan figure was first measured on ~800-byte lines).
    """
    _, hook_event, tool = KINDS[kind]
    payload: dict[str, Any] = {"session_id": "@SID@", "cwd": PROJECT_CWD, "hook_event_name": hook_event}
    if kind == "start":
        payload["source"] = "startup"
    elif kind == "end":
        payload["reason"] = "other"
    elif kind == "prompt":
        payload.update(permission_mode="default", prompt="the login test fails on CI, fix it")
    else:
        payload.update(permission_mode="default", tool_name=tool)
        if tool == "Bash":
            payload["tool_input"] = {
                "command": "pytest -q tests/test_login.py",
                "description": "run the test",
            }
        else:
            payload["tool_input"] = {"file_path": f"{PROJECT_CWD}/src/login.py"}
        if kind.endswith(".completed"):
            payload["tool_response"] = {"stdout": "1 passed in 0.12s", "stderr": "", "interrupted": False}
        payload["tool_use_id"] = "@USE@"
        if kind.endswith(".completed"):
            payload["duration_ms"] = "@DUR@"
    return payload


def _template(kind: str, project: Path) -> str:
    """A str.format template of one kind of stored record, in the daemon's key order."""
    topic, hook_event, tool = KINDS[kind]
    metadata: dict[str, Any] = {"hookEvent": hook_event, "projectDir": str(project), "sessionId": "@SID@"}
    if tool is not None:
        metadata.update(toolName=tool, toolUseId="@USE@")
        if kind.endswith(".completed"):
            metadata["durationMs"] = "@DUR@"
    record = {
        "id": "evt_01JBENCH@ID@",
        "type": "".join(part[:1].upper() + part[1:] for part in topic.split(".")),  # model.infer_type
        "topic": topic,
        "timestamp": "@TS@",
        "source": "claude-code",
        "correlationId": "@SID@",
        "causationId": "@CAUSE@",
        "metadata": metadata,
        "payload": _payload(kind),
        "sequence": "@SEQ@",
        "storedAt": "@TS@",
        "prevHash": "@CHAIN@",
    }
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("{", "{{").replace("}", "}}")
    for placeholder, field in _FIELDS.items():
        text = text.replace(placeholder, field)
    return text


def _templates(project: Path) -> dict[str, str]:
    return {kind: _template(kind, project) for kind in KINDS}


def _schedule(count: int, sessions: int, rng: random.Random) -> tuple[list[int], Iterator[tuple[int, int]]]:
    """How many events each session has, and (session, its event number) for every event in order.

    CONCURRENT_SESSIONS sessions are open at a time, each event going to one of them at
    random; when one ends the next session starts in its place.
    """
    base, extra = divmod(count, sessions)
    lengths = [base + (1 if s < extra else 0) for s in range(sessions)]

    def order() -> Iterator[tuple[int, int]]:
        done = [0] * sessions
        active = list(range(min(CONCURRENT_SESSIONS, sessions)))
        following = len(active)
        while active:
            slot = rng.randrange(len(active))
            session = active[slot]
            yield session, done[session]
            done[session] += 1
            if done[session] == lengths[session]:
                if following < sessions:
                    active[slot] = following
                    following += 1
                else:
                    active.pop(slot)

    return lengths, order()


def _kind(number: int, length: int) -> str:
    if number == 0:
        return "start"
    if number == length - 1:
        return "end"
    return CYCLE[(number - 1) % len(CYCLE)]


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
    """Write `count` events of `sessions` sessions as the daemon would have stored them."""
    started = time.perf_counter()
    events_dir = project / ".elsabro" / "events"
    events_dir.mkdir(mode=0o700, parents=True)
    rng = random.Random(seed)
    sessions = max(1, min(sessions, count // 10))
    session_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(sessions)]
    templates = _templates(project)
    lengths, order = _schedule(count, sessions, rng)
    opened: dict[int, tuple[str, int]] = {}  # session -> (tool_use_id, sequence) of its open call
    checked: set[str] = set()
    chain = store.GENESIS_HASH
    stamps = _timestamps()
    with _SegmentWriter(events_dir, segment_max_bytes) as out:
        for index, (session, number) in enumerate(order, start=1):
            kind = _kind(number, lengths[session])
            use, cause, duration = "", "null", 0
            if kind.endswith(".started"):
                use = f"toolu_{index:018d}"
                opened[session] = (use, index)
            elif kind.endswith(".completed"):
                use, start = opened.pop(session)
                cause, duration = f'"evt_01JBENCH{start:018d}"', rng.randrange(5, 3000)
            line = (
                templates[kind]
                .format(
                    index=index,
                    ts=next(stamps),
                    sid=session_ids[session],
                    chain=chain,
                    cause=cause,
                    use=use,
                    dur=duration,
                )
                .encode()
            )
            if kind not in checked:
                checked.add(kind)
                if _dumps(json.loads(line)) != line:
                    raise RuntimeError(f"generated record differs from what the daemon writes: {line!r}")
            chain = store.line_hash(line)
            out.write(index, line + b"\n")
    return GeneratedLog(
        events_dir,
        count,
        chain,
        session_ids,
        lengths,
        time.perf_counter() - started,
    )


# -- measuring ---------------------------------------------------------------------------


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
    lines = world.client(project, timeout_s=300).events(params)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(lines) != expected:
        raise RuntimeError(f"query {params} returned {len(lines)} records, expected {expected}")
    return elapsed_ms


def _full_scan_query_ms(events_dir: Path, session: str, expected: int) -> float:
    """A session's records found by reading every segment, as the daemon did before its index."""
    started = time.perf_counter()
    found = sum(1 for _ in Query(correlation_id=session).select(segments.read_lines(events_dir)))
    elapsed_ms = (time.perf_counter() - started) * 1000
    if found != expected:
        raise RuntimeError(f"the full scan found {found} records of {session}, expected {expected}")
    return elapsed_ms


def _time_view(world: World, project: Path, name: str, sessions: int) -> float:
    started = time.perf_counter()
    rows = world.client(project, timeout_s=300).call_json("GET", f"/v1/views/{name}")["rows"]
    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(rows) != sessions or not all(sum(row["toolCalls"].values()) for row in rows):
        raise RuntimeError(f"the {name} view has {len(rows)} rows, expected {sessions} with tool calls")
    return elapsed_ms


def _cli(world: World, project: Path, *args: str) -> tuple[float, str]:
    """Wall time (ms) and stdout of one `python -m elsabro` command; a failure is an error."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "elsabro", *args],
        env=world.env,
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(
            f"elsabro {' '.join(args[:3])} exited {result.returncode}: {result.stderr[-2000:]}"
        )
    return elapsed_ms, result.stdout


def _configure_replay(world: World, project: Path) -> None:
    """An append subscription for replays, in the config the daemon reads as it opens the project.

    It selects every topic, so that a replay of `#` skips nothing. Live, it is not durable:
    its consumer starts at the head of the log and sees only the chain-check event, long
    before the first replay (each replay empties the file first).
    """
    config = {
        "subscriptions": [
            {
                "name": REPLAY_SUBSCRIPTION,
                "pattern": "#",
                "handler": {"type": "append", "path": REPLAY_OUTPUT},
            }
        ]
    }
    (project / ".elsabro").mkdir(mode=0o700, parents=True, exist_ok=True)
    (project / ".elsabro" / "config.json").write_text(json.dumps(config, indent=1))
    world.trust(project)


def _window(log: GeneratedLog, events: int) -> tuple[str, str]:
    """--from and --to of `events` consecutive generated events in the middle of the log."""
    first = max(1, log.count // 2 - events // 2)
    return log.time_of(first), log.time_of(first + events - 1)


def _replay_to_subscription(world: World, project: Path, log: GeneratedLog, events: int) -> float:
    """Events/s of `elsabro replay --to-subscription` over a window (the whole command)."""
    since, until = _window(log, events)
    output = project / REPLAY_OUTPUT
    output.unlink(missing_ok=True)
    args = [
        "replay",
        "--topic",
        "#",
        "--from",
        since,
        "--to",
        until,
        "--to-subscription",
        REPLAY_SUBSCRIPTION,
    ]
    elapsed_ms, stdout = _cli(world, project, *args)
    if f"replayed {events} events (0 skipped by the filter, 0 failed)" not in stdout:
        raise RuntimeError(f"replay of {events} events said: {stdout.strip()}")
    with output.open("rb") as lines:
        written = sum(1 for _ in lines)
    if written != events:
        raise RuntimeError(f"replay delivered {written} lines to {output}, expected {events}")
    return events / (elapsed_ms / 1000)


def _replay_print(world: World, project: Path, log: GeneratedLog, events: int, *, check: bool) -> float:
    """Events/s of `elsabro replay --print` over a window, to /dev/null (or counted, to check it)."""
    since, until = _window(log, events)
    args = ["replay", "--topic", "#", "--from", since, "--to", until, "--print"]
    if check:
        elapsed_ms, stdout = _cli(world, project, *args)
        printed = stdout.count("\n")
        if printed != events or '"replay": true' not in stdout[:10_000]:
            raise RuntimeError(f"replay --print printed {printed} events, expected {events}")
    else:
        argv = [sys.executable, "-m", "elsabro", *args]
        elapsed_ms = timed_run(argv, b"", world.env, cwd=project, timeout_s=1800)
    return events / (elapsed_ms / 1000)


def measure(
    world: World, count: int, scan_runs: int, query_runs: int, sessions: int = 1000
) -> tuple[list[Figure], list[str]]:
    """Generate, scan in this process, query, fold and replay through the daemon."""
    project = world.project("scan")
    log = generate(project, count, sessions, world.settings.segment_max_bytes)
    sessions = len(log.sessions)
    _configure_replay(world, project)
    found = segments.list_segments(log.events_dir)
    segment_count, log_bytes = len(found), sum(path.stat().st_size for _, path in found)
    open_ms = _check_chain(world, project, log)
    # The subscription's live consumer gets the chain-check event: let it, before any replay.
    wait_until(lambda: (project / REPLAY_OUTPUT).exists(), 30, "the live delivery of the chain check")
    index_dir = project / ".elsabro" / "index"
    views_dir = project / ".elsabro" / "views"

    # The full scan, in this process.
    _scan_once(log.events_dir, max(1, count // 10))  # warm-up: page cache, code paths
    scans = [_scan_once(log.events_dir) for _ in range(scan_runs)]

    # Figures whose every run reads or folds the whole log (seconds each on a million
    # events), or replays a window of it, get fewer runs: 3 in a full run, 2 in --quick;
    # so do the ones that time a whole CLI process (their start-up is measured elsewhere).
    slow_runs, cli_runs = max(2, scan_runs - 2), max(3, query_runs // 2)

    # One session's history: index warm, index cold (rebuilt by the query), no index at all.
    rng = random.Random(11)
    picked = rng.sample(range(sessions), min(sessions, query_runs + 1 + 2 * slow_runs))
    warm, cold, full = picked[: query_runs + 1], picked[query_runs + 1 :][:slow_runs], picked[-slow_runs:]

    def session_query(s: int) -> float:
        return _time_query(world, project, {"correlation": log.sessions[s]}, log.per_session[s])

    session_ms = [session_query(s) for s in warm][1:]  # the first builds the index
    cold_ms = []
    for s in cold:
        shutil.rmtree(index_dir, ignore_errors=True)
        cold_ms.append(session_query(s))
    full_ms = [_full_scan_query_ms(log.events_dir, log.sessions[s], log.per_session[s]) for s in full]
    cli_history_ms = [
        _cli(world, project, "history", "--correlation", log.sessions[s], "--json")[0]
        for s in warm[: cli_runs + 1]
    ][1:]
    last_ms = [_time_query(world, project, {"limit": "1"}, 1) for _ in range(query_runs + 1)][1:]

    # The sessions view: folded from the whole log, then from its snapshot. No warm-up
    # for the folds: the files are in the page cache already, from the scans.
    rebuild_ms = []
    for _ in range(slow_runs):
        shutil.rmtree(views_dir, ignore_errors=True)
        rebuild_ms.append(_time_view(world, project, "sessions", sessions))
    view_ms = [_time_view(world, project, "sessions", sessions) for _ in range(query_runs)]
    cli_sessions_ms = [_cli(world, project, "sessions")[0] for _ in range(cli_runs + 1)][1:]

    # Replay: windows of the log through an append subscription, and printed.
    replayed, printed = max(100, count // REPLAY_FRACTION), max(1000, count // PRINT_FRACTION)
    _replay_to_subscription(world, project, log, replayed // 10)  # warm-up
    replay_runs = [_replay_to_subscription(world, project, log, replayed) for _ in range(slow_runs)]
    _replay_print(world, project, log, printed // 10, check=True)  # warm-up, counting what it prints
    print_runs = [_replay_print(world, project, log, printed, check=False) for _ in range(slow_runs)]

    per_session = round(sum(log.per_session) / sessions)
    segments_of_session = f"~{per_session} events, in 1-2 of {segment_count} segments"
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
            f"GET /v1/events?correlation=<one of {sessions} sessions, {segments_of_session}>, "
            "segment index present (.elsabro/index built by the warm-up query): reads the sealed "
            "segments the index names and the newest segment (never indexed) in full",
        ),
        Figure(
            "session_query_cold_index_ms",
            SECTION,
            "ms",
            cold_ms,
            note="the same query with .elsabro/index deleted before each run: the query rebuilds "
            f"the index of all {segment_count - 1} sealed segments",
        ),
        Figure(
            "session_query_full_scan_ms",
            SECTION,
            "ms",
            full_ms,
            note="the same session found with no index at all, in process: query.Query.select over "
            "segments.read_lines of every segment (what the daemon did before the index; no HTTP)",
        ),
        Figure(
            "cli_history_correlation_ms",
            SECTION,
            "ms",
            cli_history_ms,
            note="python -m elsabro history --correlation <session> --json, whole process, index present "
            "(includes the CLI's start-up, see cli_history_ms)",
        ),
        Figure(
            "last_event_query_ms",
            SECTION,
            "ms",
            last_ms,
            note="GET /v1/events?limit=1 (what `history --limit 1` asks) on the same log",
        ),
        Figure(
            "sessions_view_ms",
            SECTION,
            "ms",
            view_ms,
            Target("<", 100),
            f"GET /v1/views/sessions ({sessions} rows) with its snapshot in .elsabro/views up to date",
        ),
        Figure(
            "sessions_view_rebuild_ms",
            SECTION,
            "ms",
            rebuild_ms,
            note="GET /v1/views/sessions with .elsabro/views deleted before each run: the whole log "
            "folded (json.loads + SessionsView.apply per record), then the snapshot saved",
        ),
        Figure(
            "cli_sessions_ms",
            SECTION,
            "ms",
            cli_sessions_ms,
            note="python -m elsabro sessions (table of every session), whole process, snapshot up to date",
        ),
        Figure(
            "replay_events_per_s",
            SECTION,
            "events/s",
            replay_runs,
            note=f"python -m elsabro replay --topic '#' --from/--to <{replayed:,} events in the middle of "
            "the log> --to-subscription <an append handler>, whole command (start-up included); the "
            "handler writes and fdatasyncs one line per event",
        ),
        Figure(
            "replay_print_events_per_s",
            SECTION,
            "events/s",
            print_runs,
            note=f"python -m elsabro replay --topic '#' --from/--to <{printed:,} events in the middle of "
            "the log> --print > /dev/null, whole command (start-up included)",
        ),
    ]
    notes = [
        f"scan log: {count:,} hook events of {log_bytes / count:.0f} bytes on average ({sessions} sessions, "
        f"{CONCURRENT_SESSIONS} at a time) written directly in {log.elapsed_s:.1f} s "
        f"({count / log.elapsed_s:,.0f} events/s), {segment_count} segments",
        f"first request to the scan project (recovery of its newest segment + 1 append): {open_ms:.0f} ms",
    ]
    return figures, notes


def main(argv: list[str] | None = None) -> int:
    """This section alone, against a daemon of its own."""
    import argparse

    import report
    from common import Daemon

    parser = argparse.ArgumentParser(description="scan, queries and replay on a large log")
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of a million")
    parser.add_argument("--events", type=int, help="how many events to generate")
    args = parser.parse_args(argv)
    count = args.events or (100_000 if args.quick else 1_000_000)
    runs, query_runs = (3, 5) if args.quick else (5, 9)
    world = World()
    daemon = Daemon(world)
    try:
        daemon.start()
        started = time.perf_counter()
        figures, notes = measure(world, count, runs, query_runs)
        notes.append(f"section run: {time.perf_counter() - started:.0f} s")
    finally:
        daemon.stop()
        world.remove()
    print(report.markdown(figures, NOT_YET_MEASURABLE, notes), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
