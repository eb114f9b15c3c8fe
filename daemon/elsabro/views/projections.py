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
from typing import Any, ClassVar, TypeVar

from elsabro.core.model import CLAUDE_CODE_SOURCE
from elsabro.views.fields import (
    Record,
    Row,
    as_str,
    as_text,
    duration_ms,
    elapsed_us,
    fields,
    percentile,
    remember,
    seconds,
    tool_event,
)

ReadAfter = Callable[[int], Iterable[tuple[int, bytes]]]
P = TypeVar("P", bound="Projection")


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
        session = as_text(record.get("correlationId"))
        if session is None or record.get("source") != CLAUDE_CODE_SOURCE:
            return
        topic, _, stamp = fields(record)
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
        elif (event := tool_event(record)) is not None:
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
                    "durationS": seconds(elapsed_us(start, row["end"])),
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
        topic, payload, stamp = fields(record)
        if topic == "task.status.changed":
            task_id, status = as_text(payload.get("taskId")), as_str(payload.get("newStatus"))
        else:
            task_id, status = as_text(payload.get("task_id")), _TASK_STATUS.get(topic)
        if task_id is None or status is None or record.get("source") != CLAUDE_CODE_SOURCE:
            return
        session = as_text(record.get("correlationId"))
        new: dict[str, Any] = {"taskId": task_id, "subject": None, "sessionId": session, "history": []}
        task = self._state["tasks"].setdefault(json.dumps([session, task_id]), new)
        task["subject"] = as_str(payload.get("task_subject")) or task["subject"]
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
        topic, payload, stamp = fields(record)
        if topic not in ("agent.started", "agent.completed") or record.get("source") != CLAUDE_CODE_SOURCE:
            return
        agent_id, types = as_text(payload.get("agent_id")), self._state["types"]
        if topic == "agent.started":
            kind = as_str(payload.get("agent_type")) or "unknown"
            types.setdefault(kind, {"count": 0, "completed": 0, "durationsUs": []})["count"] += 1
            if agent_id is not None:
                remember(self._state["open"], agent_id, [kind, stamp])
            return
        opened = self._state["open"].pop(agent_id, None) if agent_id is not None else None
        if opened is None:
            return  # a stop with no start (compaction sends those) is no subagent that ran
        entry = types[opened[0]]
        entry["completed"] += 1
        if (elapsed := elapsed_us(opened[1], stamp)) is not None:
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
                    "p50S": seconds(percentile(durations, 50)),
                    "p95S": seconds(percentile(durations, 95)),
                    "totalS": seconds(sum(durations)) if durations else None,
                }
            )
        return sorted(rows, key=lambda r: (-r["count"], r["agentType"]))


class ToolStats(Projection):
    """Per tool: calls (started), failures, failure rate over finished calls, p50/p95 in ms."""

    name, empty = "stats", '{"tools": {}, "open": {}}'

    def apply(self, record: Record) -> None:
        event = tool_event(record)
        if event is None or record.get("source") != CLAUDE_CODE_SOURCE:
            return
        (phase, tool), (_, payload, stamp) = event, fields(record)
        use_id, tools, opened = as_text(payload.get("tool_use_id")), self._state["tools"], self._state["open"]
        entry = tools.setdefault(tool, {"calls": 0, "completed": 0, "failures": 0, "durationsMs": []})
        if phase == "started":
            entry["calls"] += 1
            if use_id is not None:
                remember(opened, use_id, stamp)
            return
        entry["failures" if phase == "failed" else "completed"] += 1
        started = opened.pop(use_id, None) if use_id is not None else None
        if (duration := duration_ms(payload, started, stamp)) is not None:
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
