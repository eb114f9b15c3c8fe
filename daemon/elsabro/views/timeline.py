"""One session's timeline: prompts, tool calls and subagents, in the order they happened."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from elsabro.views.fields import Record, Row, as_str, as_text, duration_ms, elapsed_us, fields, ms, tool_event

# The tool_input field that best says what a call did, in order of preference.
_SUMMARY_FIELDS = ("command", "file_path", "path", "pattern", "url", "query", "subject", "description")
_SUMMARY_CHARS = 120


def _summary(payload: dict[str, Any]) -> str | None:
    """What a call did, in one short line (its command, its file...)."""
    tool_input = payload.get("tool_input")
    values = [as_str(tool_input.get(key)) for key in _SUMMARY_FIELDS] if isinstance(tool_input, dict) else []
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
        topic, payload, stamp = fields(record)
        agent_id = as_text(payload.get("agent_id"))
        if topic == "prompt.submitted":
            self.entries.append({"kind": "prompt", "at": stamp, "text": as_str(payload.get("prompt"))})
        elif topic in ("agent.started", "agent.completed") and agent_id is not None:
            entry = self._agent(agent_id, payload)
            if topic == "agent.started":
                entry["start"] = stamp
            else:
                entry.update(end=stamp, durationMs=ms(elapsed_us(entry["start"], stamp)))
        elif (event := tool_event(record)) is not None:
            self._tool(*event, payload, stamp)

    def _agent(self, agent_id: str, payload: dict[str, Any]) -> Row:
        """The subagent's entry, made at its first event: a lost SubagentStart still groups its calls."""
        entry = self._agents.get(agent_id)
        if entry is None:
            entry = {"kind": "agent", "agentId": agent_id, "agentType": None, "start": None, "end": None}
            entry.update(durationMs=None, children=[])
            self._agents[agent_id] = entry
            self.entries.append(entry)
        entry["agentType"] = entry["agentType"] or as_str(payload.get("agent_type"))
        return entry

    def _tool(self, phase: str, tool: str, payload: dict[str, Any], stamp: str | None) -> None:
        use_id, agent_id = as_text(payload.get("tool_use_id")), as_text(payload.get("agent_id"))
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
        entry["durationMs"] = duration_ms(payload, entry["start"], stamp)
        if phase == "failed":
            entry["error"] = as_str(payload.get("error"))


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
