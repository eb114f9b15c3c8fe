"""Read-model projections: the views folded from a real recorded Claude Code session, unpaired
and garbage records, snapshots (a cache that never changes an answer), and the CLI's printing.

The fixture tests/fixtures/session-2.1.197.jsonl is the log of one real Claude Code 2.1.197
session (the e2e scenario, recorded once by tests/e2e/record_session.py). The expected rows
below were read off that file by hand: timestamps, duration_ms values and ids are the
recording's own, never produced by the code under test.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elsabro.cli import views as cli_views
from elsabro.core.errors import NotFound
from elsabro.views import fields, projections
from elsabro.views.fields import percentile
from elsabro.views.projections import PROJECTIONS
from elsabro.views.snapshots import rebuild, view
from elsabro.views.timeline import session_timeline
from support import FIXTURES

LINES = (FIXTURES / "session-2.1.197.jsonl").read_bytes().splitlines()
RECORDS = [json.loads(line) for line in LINES]
SESSION = "a910342a-fd49-4803-a8f0-da85bbf6eab2"
AGENT = "add7f64c409b78803"
NOTE = "/tmp/elsabro-rec-0uabe1ti/project/e2e-note.txt"
DAY = "2026-11-24T14:26:"


def test_the_fixture_is_one_whole_recorded_session() -> None:
    assert len(RECORDS) == 44
    assert [r["sequence"] for r in RECORDS] == list(range(1, 45))
    assert {r["correlationId"] for r in RECORDS} == {SESSION}
    assert RECORDS[0]["topic"] == "session.started" and RECORDS[-1]["topic"] == "session.ended"


# -- the four projections on the recording --------------------------------------------------


def test_sessions_of_the_recorded_session() -> None:
    assert rebuild("sessions", LINES) == [
        {
            "sessionId": SESSION,
            "start": DAY + "38.578Z",  # sequence 1, session.started
            "end": DAY + "39.459Z",  # sequence 44, session.ended
            "durationS": 0.881,
            "prompts": 1,
            # Started calls (PreToolUse), the subagent's Bash included: ok, fail, par_a, par_b, sub.
            "toolCalls": {
                "Agent": 1,
                "Bash": 5,
                "Edit": 1,
                "Read": 1,
                "TaskCreate": 1,
                "TaskUpdate": 1,
                "Write": 1,
            },
            "failures": 1,  # toolu_e2e_02_bash_fail, sequence 8
            "subagents": 1,
        }
    ]


def test_tasks_of_the_recorded_session() -> None:
    # task.created (seq 26) -> pending; task.completed (seq 30) -> completed; the derived
    # task.status.changed (seq 32, also "completed") adds nothing.
    assert rebuild("tasks", LINES) == [
        {
            "taskId": "1",
            "subject": "E2E task",
            "sessionId": SESSION,
            "status": "completed",
            "history": [
                {"status": "pending", "at": DAY + "39.125Z"},
                {"status": "completed", "at": DAY + "39.189Z"},
            ],
        }
    ]


def test_agents_of_the_recorded_session() -> None:
    # agent.started seq 35 at 39.259, agent.completed seq 39 at 39.340: 81 ms.
    assert rebuild("agents", LINES) == [
        {
            "agentType": "general-purpose",
            "count": 1,
            "completed": 1,
            "p50S": 0.081,
            "p95S": 0.081,
            "totalS": 0.081,
        }
    ]


def test_tool_stats_of_the_recorded_session() -> None:
    # Bash duration_ms: 20 (ok), 8 (fail), 17 (par_a), 11 (par_b), 4 (subagent) -> sorted
    # 4, 8, 11, 17, 20: p50 is rank ceil(2.5) = 3 -> 11, p95 rank ceil(4.75) = 5 -> 20.
    assert rebuild("stats", LINES) == [
        {"tool": "Bash", "calls": 5, "failures": 1, "failureRate": 0.2, "p50Ms": 11, "p95Ms": 20},
        {"tool": "Agent", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 109, "p95Ms": 109},
        {"tool": "Edit", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 5, "p95Ms": 5},
        {"tool": "Read", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 2, "p95Ms": 2},
        {"tool": "TaskCreate", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 14, "p95Ms": 14},
        {"tool": "TaskUpdate", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 14, "p95Ms": 14},
        {"tool": "Write", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 5, "p95Ms": 5},
    ]


def tool(
    name: str, use_id: str, summary: str | None, start: str, end: str, ms: int, **more: Any
) -> dict[str, Any]:
    entry = {"kind": "tool", "tool": name, "toolUseId": use_id, "summary": summary}
    entry.update(start=DAY + start, end=DAY + end, durationMs=ms, status="ok", error=None)
    return {**entry, **more}


def test_timeline_of_the_recorded_session() -> None:
    prompt = "ELSABRO-E2E-MAIN: run the scripted end-to-end scenario."
    assert session_timeline(RECORDS) == [
        {"kind": "prompt", "at": DAY + "38.614Z", "text": prompt},
        tool("Bash", "toolu_e2e_01_bash_ok", "echo hello", "38.674Z", "38.714Z", 20),
        tool(
            "Bash",
            "toolu_e2e_02_bash_fail",
            "exit 3",
            "38.761Z",
            "38.789Z",
            8,
            status="failed",
            error="Exit code 3",
        ),
        tool("Write", "toolu_e2e_03_write", NOTE, "38.826Z", "38.849Z", 5),
        tool("Read", "toolu_e2e_04_read", NOTE, "38.890Z", "38.906Z", 2),
        tool("Edit", "toolu_e2e_05_edit", NOTE, "38.944Z", "38.965Z", 5),
        # The parallel pair: both start before either finishes.
        tool("Bash", "toolu_e2e_06_par_a", "echo par-a", "39.017Z", "39.055Z", 17),
        tool("Bash", "toolu_e2e_07_par_b", "echo par-b", "39.023Z", "39.064Z", 11),
        tool("TaskCreate", "toolu_e2e_08_task_create", "E2E task", "39.110Z", "39.135Z", 14),
        tool("TaskUpdate", "toolu_e2e_09_task_update", None, "39.172Z", "39.201Z", 14),
        tool("Agent", "toolu_e2e_10_agent", "E2E subagent check", "39.236Z", "39.360Z", 109),
        {
            "kind": "agent",
            "agentId": AGENT,
            "agentType": "general-purpose",
            "start": DAY + "39.259Z",
            "end": DAY + "39.340Z",
            "durationMs": 81,  # from the two hooks' timestamps: SubagentStop has no duration_ms
            "children": [
                tool("Bash", "toolu_e2e_11_sub_bash", "echo from-subagent", "39.283Z", "39.305Z", 4)
            ],
        },
    ]


# -- unpaired, out of order, garbage -----------------------------------------------------------


def hook(
    topic: str, at: str, session: str = "s1", source: str = "claude-code", **payload: Any
) -> dict[str, Any]:
    return {
        "id": f"evt_{topic}_{at}",
        "topic": topic,
        "timestamp": f"2026-11-24T10:00:{at}Z",
        "source": source,
        "correlationId": session,
        "payload": payload,
    }


GARBAGE: list[Any] = [
    {"topic": "deploy.finished", "payload": 42, "source": "elsabro", "correlationId": "run-42"},
    {"topic": "deploy.finished", "payload": 42, "source": "claude-code", "correlationId": "run-42"},
    {},
    {"topic": 7, "payload": [1, 2], "timestamp": 5, "correlationId": ["x"], "source": "claude-code"},
    {"topic": "tool..started", "source": "claude-code", "payload": {"tool_name": None}},
    {"topic": "tool.bash.completed", "source": "claude-code", "timestamp": "not a time", "payload": None},
    {"topic": "agent.completed", "source": "claude-code", "payload": {"agent_id": {"no": 1}}},
    {"topic": "task.status.changed", "source": "claude-code", "payload": {"taskId": 3, "newStatus": 4}},
    {"topic": "task.created", "source": "claude-code", "payload": {"task_subject": "no id"}},
]


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_garbage_never_crashes_a_projection(name: str) -> None:
    lines = [b"not json", b"42", b"\xff\xfe", b"[]", b"", *(json.dumps(g).encode() for g in GARBAGE)]
    rebuild(name, lines)  # no exception
    # Only the completion with no start and no payload is a timeline entry.
    timeline = session_timeline([*GARBAGE, "not a record"])  # type: ignore[list-item]
    assert [(e["tool"], e["status"], e["start"], e["end"]) for e in timeline] == [
        ("bash", "ok", None, "not a time")
    ]


def test_garbage_only_counts_what_it_can() -> None:
    lines = [json.dumps(g).encode() for g in GARBAGE]
    # The deploy event published by hand under source claude-code still has a correlation id.
    [row] = rebuild("sessions", lines)
    assert row["sessionId"] == "run-42" and row["toolCalls"] == {} and row["durationS"] is None
    assert rebuild("stats", lines) == [
        {"tool": "bash", "calls": 0, "failures": 0, "failureRate": 0.0, "p50Ms": None, "p95Ms": None},
    ]
    assert rebuild("agents", lines) == []
    assert rebuild("tasks", lines) == []  # newStatus 4 is no status; a task without id is no task


def test_unpaired_and_out_of_order_hooks() -> None:
    records = [
        # A finish whose start predates the log, with the hook's own duration.
        hook("tool.bash.completed", "01", tool_name="Bash", tool_use_id="t0", duration_ms=30),
        # A denied call: starts, never finishes.
        hook("tool.bash.started", "02", tool_name="Bash", tool_use_id="t1"),
        # A failure with no duration_ms: measured from its start.
        hook("tool.read.started", "03.250", tool_name="Read", tool_use_id="t2"),
        hook("tool.read.failed", "03.500", tool_name="Read", tool_use_id="t2", error="boom\nmore"),
        # Compaction's SubagentStop with no start; then a subagent that never stops.
        hook("agent.completed", "04", agent_id="ghost", agent_type="general-purpose"),
        hook("agent.started", "05", agent_id="a1", agent_type="Explore"),
        # A status change seen before its task.created.
        hook("task.status.changed", "06", taskId="7", oldStatus=None, newStatus="in_progress"),
        hook("task.created", "07", task_id="7", task_subject="late"),
        # The same task id in another session is another task.
        hook("task.created", "08", session="s2", task_id="7", task_subject="other"),
        # A subagent's call that arrives before its SubagentStart (hooks run in parallel).
        hook("tool.grep.started", "09", tool_name="Grep", tool_use_id="t3", agent_id="a2"),
        hook("agent.started", "10", agent_id="a2", agent_type="Explore"),
    ]
    lines = [json.dumps(r).encode() for r in records]
    assert rebuild("stats", lines) == [
        {"tool": "Bash", "calls": 1, "failures": 0, "failureRate": 0.0, "p50Ms": 30, "p95Ms": 30},
        {"tool": "Grep", "calls": 1, "failures": 0, "failureRate": None, "p50Ms": None, "p95Ms": None},
        {"tool": "Read", "calls": 1, "failures": 1, "failureRate": 1.0, "p50Ms": 250, "p95Ms": 250},
    ]
    assert rebuild("agents", lines) == [
        {"agentType": "Explore", "count": 2, "completed": 0, "p50S": None, "p95S": None, "totalS": None}
    ]
    tasks = rebuild("tasks", lines)
    assert [(t["sessionId"], t["taskId"], t["subject"], t["status"]) for t in tasks] == [
        ("s1", "7", "late", "in_progress"),
        ("s2", "7", "other", "pending"),
    ]
    assert [h["status"] for h in tasks[0]["history"]] == ["pending", "in_progress"]
    [s1, s2] = rebuild("sessions", lines)
    assert (s1["sessionId"], s1["start"], s1["end"], s1["durationS"]) == (
        "s1",
        "2026-11-24T10:00:01Z",
        None,
        None,
    )
    assert (
        s1["toolCalls"] == {"Bash": 1, "Grep": 1, "Read": 1} and s1["failures"] == 1 and s1["subagents"] == 2
    )
    assert s2["sessionId"] == "s2"

    timeline = session_timeline(r for r in records if r["correlationId"] == "s1")
    assert [e["kind"] for e in timeline] == ["tool", "tool", "tool", "agent", "agent", "agent"]
    assert timeline[0]["start"] is None and timeline[0]["durationMs"] == 30
    assert timeline[1]["status"] is None and timeline[1]["end"] is None
    assert (timeline[2]["status"], timeline[2]["durationMs"], timeline[2]["error"]) == (
        "failed",
        250,
        "boom\nmore",
    )
    ghost, idle, late = timeline[3:]
    assert (ghost["agentId"], ghost["start"], ghost["end"], ghost["durationMs"]) == (
        "ghost",
        None,
        "2026-11-24T10:00:04Z",
        None,
    )
    assert (late["agentId"], late["start"]) == ("a2", "2026-11-24T10:00:10Z")
    assert [c["toolUseId"] for c in late["children"]] == ["t3"]  # grouped although it came first
    assert (idle["agentId"], idle["agentType"], idle["end"], idle["children"]) == ("a1", "Explore", None, [])


def test_microsecond_timestamps_and_backwards_clocks() -> None:
    records = [
        hook("tool.x.started", "01", tool_name="X", tool_use_id="u"),
        {
            **hook("tool.x.completed", "", tool_name="X", tool_use_id="u"),
            "timestamp": "2026-11-24T10:00:01.000250Z",
        },
        hook("tool.y.started", "05", tool_name="Y", tool_use_id="v"),
        hook("tool.y.completed", "04", tool_name="Y", tool_use_id="v"),  # the clocks disagree
    ]
    stats = {row["tool"]: row for row in rebuild("stats", [json.dumps(r) for r in records])}
    assert stats["X"]["p50Ms"] == 0.25
    assert stats["Y"]["p50Ms"] is None  # a negative duration is no duration


def test_starts_that_never_finish_are_forgotten_past_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields, "OPEN_LIMIT", 2)
    stats = projections.ToolStats()
    for n in range(3):  # three denied calls: started, never finished
        stats.apply(hook("tool.bash.started", f"0{n}", tool_name="Bash", tool_use_id=f"t{n}"))
    assert list(stats.state()["open"]) == ["t1", "t2"]
    stats.apply(hook("tool.bash.completed", "05", tool_name="Bash", tool_use_id="t0"))  # forgotten
    stats.apply(hook("tool.bash.completed", "05", tool_name="Bash", tool_use_id="t2"))
    assert stats.rows()[0]["p50Ms"] == 3000  # only t2 was timed: 00 .. 05 for t0 is unknown
    assert stats.rows()[0]["calls"] == 3


def test_percentile_is_nearest_rank() -> None:
    values = [50, 15, 40, 35, 20]  # sorted: 15 20 35 40 50
    assert [percentile(values, p) for p in (0, 5, 20, 21, 30, 40, 50, 95, 100)] == [
        15,
        15,
        15,
        20,
        20,
        20,
        35,
        50,
        50,
    ]
    assert percentile([], 50) is None
    assert percentile([7], 95) == 7


# -- snapshots ----------------------------------------------------------------------------------


class Log:
    """A log in memory: read_after(s) yields (sequence, line) after s, as ProjectLog.read does."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = list(lines)
        self.calls: list[int] = []

    def read_after(self, after: int) -> Iterator[tuple[int, bytes]]:
        self.calls.append(after)
        for line in self.lines:
            sequence = json.loads(line)["sequence"]
            if sequence > after:
                yield sequence, line


def snapshot(directory: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / f"{name}.json").read_bytes())
    return data


def test_a_snapshot_is_written_once_frequency_events_were_folded(tmp_path: Path) -> None:
    log = Log(LINES[:20])
    assert view("stats", log.read_after, tmp_path, 10) == rebuild("stats", LINES[:20])
    saved = snapshot(tmp_path, "stats")
    assert (saved["version"], saved["sequence"], saved["id"]) == (1, 20, RECORDS[19]["id"])
    assert set(saved["state"]) == {"tools", "open"}

    log.lines = LINES[:29]  # 9 more: below the frequency, the snapshot stays
    assert view("stats", log.read_after, tmp_path, 10) == rebuild("stats", LINES[:29])
    assert log.calls[-1] == 19  # resumed from the snapshot, reading its own last record first
    assert snapshot(tmp_path, "stats")["sequence"] == 20

    log.lines = LINES[:30]  # 10 since the snapshot it started from
    view("stats", log.read_after, tmp_path, 10)
    assert snapshot(tmp_path, "stats")["sequence"] == 30

    view("stats", log.read_after, tmp_path, 10)  # nothing new: nothing written
    assert snapshot(tmp_path, "stats")["sequence"] == 30


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_deleting_the_snapshot_changes_no_answer(tmp_path: Path, name: str) -> None:
    log = Log(LINES[:23])  # between the parallel pair's finishes: one call still open
    view(name, log.read_after, tmp_path, 1)
    log.lines = LINES
    with_snapshot = view(name, log.read_after, tmp_path, 1)
    (tmp_path / f"{name}.json").unlink()
    assert view(name, log.read_after, tmp_path, 1) == with_snapshot == rebuild(name, LINES)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_a_snapshot_then_more_events_equals_a_rebuild_at_every_split(tmp_path: Path, name: str) -> None:
    expected = rebuild(name, LINES)
    for split in range(1, len(LINES)):
        directory = tmp_path / str(split)
        log = Log(LINES[:split])
        assert view(name, log.read_after, directory, 1) == rebuild(name, LINES[:split])
        log.lines = LINES
        assert view(name, log.read_after, directory, 1) == expected, f"split at {split}"
        assert log.calls[-1] == split - 1


def corrupt_variants() -> list[bytes]:
    good = {"version": 1, "sequence": 20, "id": RECORDS[19]["id"]}
    return [
        b"",
        b"{not json",
        b"\x00\x01\x02",
        b"[1, 2]",
        json.dumps({**good, "version": 99, "state": {"tools": {}, "open": {}}}).encode(),
        json.dumps({**good, "sequence": "20", "state": {"tools": {}, "open": {}}}).encode(),
        json.dumps({**good, "state": {"tools": []}}).encode(),  # another shape
        json.dumps({**good, "state": {"tools": {"Bash": 5}, "open": {}}}).encode(),  # wrong inside
        json.dumps({**good, "sequence": 999, "state": {"tools": {}, "open": {}}}).encode(),  # past the end
        # The log's record 20 is not the one the snapshot folded (the log was repaired).
        json.dumps({**good, "id": "evt_someone_else", "state": {"tools": {}, "open": {}}}).encode(),
    ]


@pytest.mark.parametrize("data", corrupt_variants())
def test_a_corrupt_or_stale_snapshot_is_ignored(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "stats.json").write_bytes(data)
    log = Log(LINES)
    assert view("stats", log.read_after, tmp_path, 1000) == rebuild("stats", LINES)
    view("stats", log.read_after, tmp_path, 1)
    assert snapshot(tmp_path, "stats")["sequence"] == 44  # replaced by a good one


def test_a_snapshot_that_cannot_be_written_costs_nothing_but_time(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert view("sessions", Log(LINES).read_after, blocker, 1) == rebuild("sessions", LINES)


def test_an_unknown_view_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no view 'bogus'"):
        view("bogus", Log(LINES).read_after, tmp_path, 1)
    with pytest.raises(NotFound):
        rebuild("bogus", LINES)


# -- printing and the CLI -----------------------------------------------------------------------


def test_format_sessions() -> None:
    text = cli_views.format_sessions(rebuild("sessions", LINES))
    header, line = text.splitlines()
    assert header.split()[:3] == ["SESSION", "START", "(UTC)"]
    assert SESSION in line and "2026-11-24 14:26:38" in line and "881 ms" in line
    assert line.split()[5:10] == ["1", "11", "1", "1", "Bash"]  # prompts, tools, failed, agents
    assert "Bash 5, Agent 1" in line
    assert cli_views.format_sessions([]) == "no sessions recorded\n"


def test_format_tasks_agents_stats() -> None:
    tasks = cli_views.format_tasks(rebuild("tasks", LINES))
    assert "E2E task" in tasks and "pending 14:26:39 -> completed 14:26:39" in tasks
    agents = cli_views.format_agents(rebuild("agents", LINES)).splitlines()
    assert agents[1].split() == ["general-purpose", "1", "1", "81", "ms", "81", "ms", "81", "ms"]
    stats = cli_views.format_stats(rebuild("stats", LINES)).splitlines()
    assert stats[1].split() == ["Bash", "5", "1", "20%", "11", "ms", "20", "ms"]
    assert len({len(line) for line in stats[1:]}) == 1  # aligned columns


def test_format_timeline() -> None:
    lines = cli_views.format_timeline(session_timeline(RECORDS)).splitlines()
    assert lines[0] == "14:26:38.614  prompt  ELSABRO-E2E-MAIN: run the scripted end-to-end scenario."
    assert lines[2].split() == [
        "14:26:38.761",
        "Bash",
        "FAILED",
        "8",
        "ms",
        "exit",
        "3",
        "error:",
        "Exit",
        "code",
        "3",
    ]
    assert lines[-2] == f"14:26:39.259  subagent general-purpose ({AGENT})  81 ms"
    assert lines[-1].startswith("14:26:39.283    Bash") and "echo from-subagent" in lines[-1]
    assert cli_views.format_timeline([]) == "no events for this session\n"


def test_format_durations() -> None:
    assert [cli_views._duration(s) for s in (None, 0.0004, 0.081, 12.34, 245, 7380)] == [
        "-",
        "0 ms",
        "81 ms",
        "12.3 s",
        "4m05s",
        "2h03m",
    ]


class FakeContext:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.requests: list[tuple[str, str, dict[str, str] | None]] = []

    def with_daemon(self, call: Any) -> Any:
        return call(self)

    def call_json(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        self.requests.append((method, path, params))
        return {"rows": self.rows}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_views.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize("name", ["sessions", "tasks", "agents", "stats"])
def test_view_commands_fetch_their_rows(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = rebuild(name, LINES)
    ctx = FakeContext(rows)
    args = parse(name, "--json")
    assert args.func(ctx, args) == 0
    assert ctx.requests == [("GET", f"/v1/views/{name}", None)]
    assert json.loads(capsys.readouterr().out) == rows
    args = parse(name)
    assert args.func(ctx, args) == 0
    assert capsys.readouterr().out == getattr(cli_views, f"format_{name}")(rows)


def test_the_session_command_asks_for_one_session(capsys: pytest.CaptureFixture[str]) -> None:
    entries = session_timeline(RECORDS)
    ctx = FakeContext(entries)
    args = parse("session", SESSION)
    assert args.func(ctx, args) == 0
    assert ctx.requests == [("GET", "/v1/views/session", {"id": SESSION})]
    assert capsys.readouterr().out == cli_views.format_timeline(entries)
