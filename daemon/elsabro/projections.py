"""Read models folded from a project's event log: sessions, tasks, agents, tool stats, timelines.

A projection is a left fold over stored records in log (sequence) order: `apply(record)`
updates a state that is plain JSON, `rows()` turns it into rows with camelCase keys. Being
JSON, the state can be saved as a snapshot and the fold resumed after its sequence.

snapshots.py runs these folds over a log and keeps the snapshots, which are only a cache.

Hooks arrive unpaired and out of order (a denied tool never completes, compaction sends
SubagentStop with no start), payloads miss fields, other publishers share the log. Nothing
here raises on that: a field of the wrong type counts as absent, a finish with no start
still counts (timed by its own duration_ms, if any), and the folding projections ignore
records that do not come from Claude Code's hook.

Definitions: a tool call counts when it starts (PreToolUse), since a call that never
finishes (denied, interrupted, running) was still made; calls inside subagents count for
their session. A failure is a PostToolUseFailure; the failure rate is over finished calls.
A tool's duration is the hook's own `duration_ms`, else finish minus start time matched by
`tool_use_id`; a subagent's runs from SubagentStart to SubagentStop matched by `agent_id`.
Percentiles are nearest-rank: the p-th of n sorted values is the one at 1-based rank
ceil(p * n / 100), always an observed value, null when there is none. A task's history
gains an entry only when its status changes (TaskCompleted and the task.status.changed of
the same TaskUpdate are one change).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar

from .ingest import SOURCE

Record = dict[str, Any]
Row = dict[str, Any]
ReadAfter = Callable[[int], Iterable[tuple[int, bytes]]]
P = TypeVar("P", bound="Projection")

# Starts waiting for their finish. Some never finish (denied calls) and would grow a
# snapshot forever: past this many, the oldest are forgotten.
_OPEN_LIMIT = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PHASES = ("started", "completed", "failed")
# The tool_input field that best says what a call did, in order of preference.
_SUMMARY_FIELDS = ("command", "file_path", "path", "pattern", "url", "query", "subject", "description")
_SUMMARY_CHARS = 120


def _text(value: Any) -> str | None:
    """A string, or an id written as a number; anything else counts as absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _str(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _fields(record: Record) -> tuple[str, dict[str, Any], str | None]:
    """(topic, payload, timestamp) of any record, whatever it holds."""
    payload = record.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    return _str(record.get("topic")) or "", payload, _str(record.get("timestamp"))


def _micros(stamp: str | None) -> int | None:
    """Microseconds since the epoch, exactly (floats would turn 81 ms into 80.99999 ms)."""
    try:
        parsed = datetime.fromisoformat((stamp or "").replace("Z", "+00:00"))  # 3.10 cannot read Z
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH) // timedelta(microseconds=1)


def _elapsed_us(start: str | None, end: str | None) -> int | None:
    """end - start; None when either is unknown or the clocks say time went backwards."""
    first, last = _micros(start), _micros(end)
    return None if first is None or last is None or last < first else last - first


def _ms(micros: int | None) -> int | float | None:
    if micros is None:
        return None
    return micros // 1000 if micros % 1000 == 0 else micros / 1000


def _seconds(micros: float | None) -> float | None:
    return None if micros is None else micros / 1e6


def _duration_ms(payload: dict[str, Any], start: str | None, end: str | None) -> int | float | None:
    """The hook's own measure when it gave one, else the time between the two events."""
    given = payload.get("duration_ms")
    if isinstance(given, (int, float)) and not isinstance(given, bool) and given >= 0:
        return given
    return _ms(_elapsed_us(start, end))


def _tool_event(record: Record) -> tuple[str, str] | None:
    """(phase, tool name) of a `tool.<tool>.started|completed|failed` record, else None."""
    topic, payload, _ = _fields(record)
    parts = topic.split(".")
    if len(parts) < 3 or parts[0] != "tool" or parts[-1] not in _PHASES:
        return None
    # The payload spells the name as Claude Code does ("Bash"); the topic has it in lower case.
    name = _str(payload.get("tool_name")) or ".".join(parts[1:-1])
    return (parts[-1], name) if name else None


def _remember(mapping: dict[str, Any], key: str, value: Any) -> None:
    mapping.pop(key, None)  # a repeated key moves to the newest end
    mapping[key] = value
    while len(mapping) > _OPEN_LIMIT:
        del mapping[next(iter(mapping))]


def percentile(values: Iterable[int | float], p: int) -> int | float | None:
    """Nearest-rank percentile: the value at 1-based rank ceil(p * n / 100) of the sorted values."""
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)  # ceil in integers: no float rounding at the boundaries
    return ordered[max(rank, 1) - 1] if ordered else None


# -- the folding projections ----------------------------------------------------------------


class Projection:
    """A fold over records whose whole state is one JSON object (see the module docstring)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the state's shape or meaning changes: old snapshots go
    empty: ClassVar[str]  # the initial state, as JSON

    def __init__(self) -> None:
        self._state: dict[str, Any] = json.loads(self.empty)

    def apply(self, record: Record) -> None:
        raise NotImplementedError

    def rows(self) -> list[Row]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """The live state, not a copy: serialize it before applying more records."""
        return self._state

    @classmethod
    def from_state(cls: type[P], state: Any) -> P:
        """A projection that continues from `state`; ValueError if it is not of this one's shape."""
        projection = cls()
        empty = projection._state
        shape = {key: type(value) for key, value in empty.items()}
        if not isinstance(state, dict) or {key: type(value) for key, value in state.items()} != shape:
            raise ValueError(f"not a {cls.name} state")
        projection._state = state
        return projection


class SessionsView(Projection):
    """One row per Claude Code session (correlationId), ordered by start."""

    name, empty = "sessions", '{"sessions": {}}'

    def apply(self, record: Record) -> None:
        session = _text(record.get("correlationId"))
        if session is None or record.get("source") != SOURCE:
            return
        topic, _, stamp = _fields(record)
        new = {"first": stamp, "start": None, "end": None, "prompts": 0, "subagents": 0}
        row = self._state["sessions"].setdefault(session, {**new, "tools": {}, "failures": 0})
        row["first"] = row["first"] or stamp
        if topic == "session.started":
            row["start"] = row["start"] or stamp
            row["end"] = None  # a resumed session is open again
        elif topic == "session.ended":
            row["end"] = stamp
        elif topic in ("prompt.submitted", "agent.started"):
            row["prompts" if topic == "prompt.submitted" else "subagents"] += 1
        elif (event := _tool_event(record)) is not None:
            phase, tool = event
            if phase == "started":
                row["tools"][tool] = row["tools"].get(tool, 0) + 1
            elif phase == "failed":
                row["failures"] += 1

    def rows(self) -> list[Row]:
        rows = []
        for session, row in self._state["sessions"].items():
            start = row["start"] or row["first"]  # its SessionStart may predate the log
            rows.append(
                {
                    "sessionId": session,
                    "start": start,
                    "end": row["end"],
                    "durationS": _seconds(_elapsed_us(start, row["end"])),
                    "prompts": row["prompts"],
                    "toolCalls": dict(sorted(row["tools"].items())),
                    "failures": row["failures"],
                    "subagents": row["subagents"],
                }
            )
        return sorted(rows, key=lambda r: (r["start"] or "", r["sessionId"]))


# Topic -> the status it sets; task.status.changed (derived from TaskUpdate) names its own.
_TASK_STATUS = {"task.created": "pending", "task.completed": "completed"}


class TaskView(Projection):
    """One row per task, keyed by session and task id: Claude Code numbers tasks per session."""

    name, empty = "tasks", '{"tasks": {}}'

    def apply(self, record: Record) -> None:
        topic, payload, stamp = _fields(record)
        if topic == "task.status.changed":
            task_id, status = _text(payload.get("taskId")), _str(payload.get("newStatus"))
        else:
            task_id, status = _text(payload.get("task_id")), _TASK_STATUS.get(topic)
        if task_id is None or status is None or record.get("source") != SOURCE:
            return
        session = _text(record.get("correlationId"))
        new: dict[str, Any] = {"taskId": task_id, "subject": None, "sessionId": session, "history": []}
        task = self._state["tasks"].setdefault(json.dumps([session, task_id]), new)
        task["subject"] = _str(payload.get("task_subject")) or task["subject"]
        history, entry = task["history"], {"status": status, "at": stamp}
        if topic == "task.created" and history:
            if history[0]["status"] != "pending":  # created seen after a change: it still came first
                history.insert(0, entry)
        elif not history or history[-1]["status"] != status:
            # TaskCompleted and the task.status.changed of its TaskUpdate both say "completed".
            history.append(entry)

    def rows(self) -> list[Row]:
        return [
            {**task, "status": task["history"][-1]["status"], "history": [dict(h) for h in task["history"]]}
            for task in self._state["tasks"].values()
        ]


class AgentView(Projection):
    """Per subagent type: how many started, how many stopped, how long they ran (seconds)."""

    name, empty = "agents", '{"types": {}, "open": {}}'

    def apply(self, record: Record) -> None:
        topic, payload, stamp = _fields(record)
        if topic not in ("agent.started", "agent.completed") or record.get("source") != SOURCE:
            return
        agent_id, types = _text(payload.get("agent_id")), self._state["types"]
        if topic == "agent.started":
            kind = _str(payload.get("agent_type")) or "unknown"
            types.setdefault(kind, {"count": 0, "completed": 0, "durationsUs": []})["count"] += 1
            if agent_id is not None:
                _remember(self._state["open"], agent_id, [kind, stamp])
            return
        opened = self._state["open"].pop(agent_id, None) if agent_id is not None else None
        if opened is None:
            return  # a stop with no start (compaction sends those) is no subagent that ran
        entry = types[opened[0]]
        entry["completed"] += 1
        if (elapsed := _elapsed_us(opened[1], stamp)) is not None:
            entry["durationsUs"].append(elapsed)

    def rows(self) -> list[Row]:
        rows = []
        for kind, entry in self._state["types"].items():
            durations = entry["durationsUs"]
            rows.append(
                {
                    "agentType": kind,
                    "count": entry["count"],
                    "completed": entry["completed"],
                    "p50S": _seconds(percentile(durations, 50)),
                    "p95S": _seconds(percentile(durations, 95)),
                    "totalS": _seconds(sum(durations)) if durations else None,
                }
            )
        return sorted(rows, key=lambda r: (-r["count"], r["agentType"]))


class ToolStats(Projection):
    """Per tool: calls (started), failures, failure rate over finished calls, p50/p95 in ms."""

    name, empty = "stats", '{"tools": {}, "open": {}}'

    def apply(self, record: Record) -> None:
        event = _tool_event(record)
        if event is None or record.get("source") != SOURCE:
            return
        (phase, tool), (_, payload, stamp) = event, _fields(record)
        use_id, tools, opened = _text(payload.get("tool_use_id")), self._state["tools"], self._state["open"]
        entry = tools.setdefault(tool, {"calls": 0, "completed": 0, "failures": 0, "durationsMs": []})
        if phase == "started":
            entry["calls"] += 1
            if use_id is not None:
                _remember(opened, use_id, stamp)
            return
        entry["failures" if phase == "failed" else "completed"] += 1
        started = opened.pop(use_id, None) if use_id is not None else None
        if (duration := _duration_ms(payload, started, stamp)) is not None:
            entry["durationsMs"].append(duration)

    def rows(self) -> list[Row]:
        rows = []
        for tool, entry in self._state["tools"].items():
            # Over finished calls: a running (or denied) call has not failed, and failures
            # whose start predates the log cannot push the rate past 1.
            finished = entry["completed"] + entry["failures"]
            rows.append(
                {
                    "tool": tool,
                    "calls": entry["calls"],
                    "failures": entry["failures"],
                    "failureRate": round(entry["failures"] / finished, 4) if finished else None,
                    "p50Ms": percentile(entry["durationsMs"], 50),
                    "p95Ms": percentile(entry["durationsMs"], 95),
                }
            )
        return sorted(rows, key=lambda r: (-r["calls"], r["tool"]))


PROJECTIONS: dict[str, type[Projection]] = {
    cls.name: cls for cls in (SessionsView, TaskView, AgentView, ToolStats)
}


# -- one session's timeline -----------------------------------------------------------------


def _summary(payload: dict[str, Any]) -> str | None:
    """What a call did, in one short line (its command, its file...)."""
    tool_input = payload.get("tool_input")
    values = [_str(tool_input.get(key)) for key in _SUMMARY_FIELDS] if isinstance(tool_input, dict) else []
    line = next((value.strip().split("\n")[0] for value in values if value and value.strip()), None)
    if line is None or len(line) <= _SUMMARY_CHARS:
        return line
    return line[: _SUMMARY_CHARS - 3] + "..."


class _Timeline:
    """Entries in the order their first event was stored; a subagent's calls nest under it."""

    def __init__(self) -> None:
        self.entries: list[Row] = []
        self._tools: dict[str, Row] = {}
        self._agents: dict[str, Row] = {}

    def apply(self, record: Record) -> None:
        topic, payload, stamp = _fields(record)
        agent_id = _text(payload.get("agent_id"))
        if topic == "prompt.submitted":
            self.entries.append({"kind": "prompt", "at": stamp, "text": _str(payload.get("prompt"))})
        elif topic in ("agent.started", "agent.completed") and agent_id is not None:
            entry = self._agent(agent_id, payload)
            if topic == "agent.started":
                entry["start"] = stamp
            else:
                entry.update(end=stamp, durationMs=_ms(_elapsed_us(entry["start"], stamp)))
        elif (event := _tool_event(record)) is not None:
            self._tool(*event, payload, stamp)

    def _agent(self, agent_id: str, payload: dict[str, Any]) -> Row:
        """The subagent's entry, made at its first event: a lost SubagentStart still groups its calls."""
        entry = self._agents.get(agent_id)
        if entry is None:
            entry = {"kind": "agent", "agentId": agent_id, "agentType": None, "start": None, "end": None}
            entry.update(durationMs=None, children=[])
            self._agents[agent_id] = entry
            self.entries.append(entry)
        entry["agentType"] = entry["agentType"] or _str(payload.get("agent_type"))
        return entry

    def _tool(self, phase: str, tool: str, payload: dict[str, Any], stamp: str | None) -> None:
        use_id, agent_id = _text(payload.get("tool_use_id")), _text(payload.get("agent_id"))
        entry = self._tools.get(use_id) if use_id is not None else None
        if entry is None:
            entry = {"kind": "tool", "tool": tool, "toolUseId": use_id, "summary": _summary(payload)}
            entry.update(start=None, end=None, durationMs=None, status=None, error=None)
            parent = self.entries if agent_id is None else self._agent(agent_id, payload)["children"]
            parent.append(entry)
            if use_id is not None:
                self._tools[use_id] = entry
        if phase == "started":
            entry["start"] = stamp
            return
        entry.update(end=stamp, status="failed" if phase == "failed" else "ok")
        entry["durationMs"] = _duration_ms(payload, entry["start"], stamp)
        if phase == "failed":
            entry["error"] = _str(payload.get("error"))


def session_timeline(records: Iterable[Record]) -> list[Row]:
    """The timeline of one session's records (the caller selects them), as JSON entries.

    `prompt` {at, text}; `tool` {tool, toolUseId, summary, start, end, durationMs, status:
    "ok", "failed" or null when no finish was seen, error}; `agent` {agentId, agentType,
    start, end, durationMs, children: the tool calls made inside it}.
    """
    timeline = _Timeline()
    for record in records:
        if isinstance(record, dict):
            timeline.apply(record)
    return timeline.entries
