"""Claude Code hook payload -> events: the topic, the links between events, derived events.

The raw hook input becomes the event's `payload`; `correlationId` is the session id;
`causationId` links an effect to its cause (a tool's completed or failed event to its
started event by `tool_use_id`, `agent.completed` to `agent.started` by `agent_id`).
Events may arrive unpaired or out of order (a denied tool never completes; compaction
sends SubagentStop with no start): every one is stored, none waits for a partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from elsabro.core.errors import BadRequest
from elsabro.core.model import CLAUDE_CODE_SOURCE, Event

# Hook event name -> topic. `{tool}` is the tool name in lower case; `{kind}` the notification type.
TOPICS: dict[str, str] = {
    "SessionStart": "session.started",
    "SessionEnd": "session.ended",
    "Setup": "session.setup",
    "InstructionsLoaded": "instructions.loaded",
    "UserPromptExpansion": "prompt.expanded",
    "UserPromptSubmit": "prompt.submitted",
    "PreToolUse": "tool.{tool}.started",
    "PostToolUse": "tool.{tool}.completed",
    "PostToolUseFailure": "tool.{tool}.failed",
    "PostToolBatch": "toolbatch.completed",
    "PermissionRequest": "permission.requested",
    "PermissionDenied": "permission.denied",
    "Notification": "notification.{kind}",
    "Elicitation": "elicitation.requested",
    "ElicitationResult": "elicitation.answered",
    "SubagentStart": "agent.started",
    "SubagentStop": "agent.completed",
    "TaskCreated": "task.created",
    "TaskCompleted": "task.completed",
    "TeammateIdle": "teammate.idle",
    "Stop": "turn.completed",
    "StopFailure": "turn.failed",
    "PreCompact": "context.compacting",
    "PostCompact": "context.compacted",
    "ConfigChange": "config.changed",
    "CwdChanged": "cwd.changed",
    "FileChanged": "file.changed",
    "MessageDisplay": "message.displayed",
    # Claude Code 2.1.332 and later.
    "DirectoryAdded": "directory.added",
    "PreModelSwitch": "model.switching",
    "PostModelSwitch": "model.switched",
}
# The prompt Claude Code submits itself when a background task (a subagent) finishes
# (2.1.332: a UserPromptSubmit whose prompt is a `<task-notification>` element): not the user's.
TASK_NOTIFICATION_TOPIC = "prompt.task_notification"
_TASK_NOTIFICATION_PREFIX = "<task-notification>"

_NOT_SEGMENT = re.compile(r"[^A-Za-z0-9_\-:]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_SEGMENT_CHARS = 100
# How long the first event of an unknown session waits for its SessionStart.
SESSION_START_WAIT_S = 0.3
# How many open tool calls, agents and tasks to remember per project for linking.
_MEMORY = 10_000


def _segment(text: Any, fallback: str) -> str:
    """A safe topic segment from a name (`mcp__github__create_issue`, `Bash` -> `bash`).

    A very long name is cut and given a short hash of the whole, so the topic stays
    valid (topics are at most 256 characters) and still tells long names apart.
    """
    cleaned = _NOT_SEGMENT.sub("_", str(text or "").lower()).strip("_")
    if len(cleaned) > _MAX_SEGMENT_CHARS:
        digest = hashlib.sha256(cleaned.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: _MAX_SEGMENT_CHARS - 9]}_{digest}"
    return cleaned or fallback


def topic_for(payload: dict[str, Any]) -> str:
    """The topic of a hook payload; an event not in the table becomes `hook.<snake_case>`."""
    name = payload.get("hook_event_name")
    if not isinstance(name, str) or not name:
        raise BadRequest("hook payload has no hook_event_name")
    template = TOPICS.get(name)
    if name == "UserPromptSubmit" and _is_task_notification(payload.get("prompt")):
        return TASK_NOTIFICATION_TOPIC
    if template is None:
        return "hook." + _segment(_CAMEL.sub("_", name), "unknown")
    return template.format(
        tool=_segment(payload.get("tool_name"), "unknown"),
        kind=_segment(payload.get("notification_type"), "other"),
    )


def _is_task_notification(prompt: Any) -> bool:
    return isinstance(prompt, str) and prompt.lstrip().startswith(_TASK_NOTIFICATION_PREFIX)


class _Lru(OrderedDict[str, str]):
    def remember(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MEMORY:
            self.popitem(last=False)


class Ingest:
    """Turns one project's hook payloads into events, remembering what links them."""

    def __init__(self, project_dir: str) -> None:
        self.project_dir = project_dir
        self._tool_started = _Lru()  # tool_use_id -> started event id
        self._agent_started = _Lru()  # agent_id -> started event id
        self._task_status = _Lru()  # task id -> last known status
        self._sessions = _Lru()  # session ids whose start was seen (or waited for)
        self._starting: dict[str, asyncio.Event] = {}

    async def session_started(self, payload: Any, timeout_s: float = SESSION_START_WAIT_S) -> None:
        """Let the first events of a new session wait (briefly) for its SessionStart.

        Claude Code runs the hooks of one session in parallel processes, so an early event
        (InstructionsLoaded, UserPromptSubmit) can reach the daemon before SessionStart.
        Holding an unknown session's first events for at most `timeout_s` keeps
        `session.started` first; once waited for, a session never waits again.
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("session_id"), str):
            return
        session = payload["session_id"]
        if payload.get("hook_event_name") == "SessionStart":
            self._sessions.remember(session, "started")
            started = self._starting.pop(session, None)
            if started is not None:
                started.set()
            return
        if session in self._sessions:
            return
        started = self._starting.setdefault(session, asyncio.Event())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(started.wait(), timeout_s)
        self._sessions.remember(session, "waited")
        self._starting.pop(session, None)

    def learn(self, records: Iterable[dict[str, Any]]) -> None:
        """Rebuild the links from stored records (the recent tail, after a restart)."""
        for record in records:
            if record.get("correlationId") and record.get("source") == CLAUDE_CODE_SOURCE:
                self._sessions.remember(record["correlationId"], "seen")
            if record.get("source") == CLAUDE_CODE_SOURCE:
                self._observe(
                    record["topic"], record.get("metadata") or {}, record["id"], record.get("payload")
                )

    def events(self, payload: Any, *, timestamp: str | None = None) -> list[Event]:
        """The event for one hook payload, plus any derived events, in order."""
        if not isinstance(payload, dict):
            raise BadRequest("a hook payload must be a JSON object")
        topic = topic_for(payload)
        metadata = self._metadata(payload)
        event = Event.new(
            topic,
            payload,
            timestamp=timestamp,
            source=CLAUDE_CODE_SOURCE,
            correlation_id=_text(payload.get("session_id")),
            causation_id=self._cause(topic, metadata),
            metadata=metadata,
        )
        derived = self._derived(event, payload)
        if payload["hook_event_name"] == "SessionStart" and event.correlation_id:
            self._sessions.remember(event.correlation_id, "started")  # also when it came from the spool
        self._observe(topic, metadata, event.id, payload)
        return [event, *derived]

    def _metadata(self, payload: dict[str, Any]) -> dict[str, Any]:
        pairs = {
            "hookEvent": payload.get("hook_event_name"),
            "projectDir": self.project_dir,
            "sessionId": _text(payload.get("session_id")),
            "promptId": _text(payload.get("prompt_id")),
            "agentId": _text(payload.get("agent_id")),
            "agentType": payload.get("agent_type"),
            "toolName": payload.get("tool_name"),
            "toolUseId": _text(payload.get("tool_use_id")),
            "durationMs": payload.get("duration_ms"),
        }
        return {key: value for key, value in pairs.items() if value is not None}

    def _cause(self, topic: str, metadata: dict[str, Any]) -> str | None:
        tool_use = metadata.get("toolUseId")
        if (
            tool_use
            and (topic.endswith(".completed") or topic.endswith(".failed"))
            and topic.startswith("tool.")
        ):
            return self._tool_started.get(tool_use)
        if topic == "agent.completed" and metadata.get("agentId"):
            return self._agent_started.get(metadata["agentId"])
        return None

    def _observe(self, topic: str, metadata: dict[str, Any], event_id: str, payload: Any) -> None:
        if topic.startswith("tool.") and topic.endswith(".started") and metadata.get("toolUseId"):
            self._tool_started.remember(metadata["toolUseId"], event_id)
        elif topic == "agent.started" and metadata.get("agentId"):
            self._agent_started.remember(metadata["agentId"], event_id)
        elif topic == "task.created" and isinstance(payload, dict) and payload.get("task_id") is not None:
            self._task_status.remember(str(payload["task_id"]), "pending")
        elif topic == "task.status.changed" and isinstance(payload, dict) and payload.get("taskId"):
            self._task_status.remember(str(payload["taskId"]), str(payload.get("newStatus")))

    def _derived(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        """A TaskUpdate that sets a status also yields `task.status.changed`, as the seed names it."""
        tool_input = payload.get("tool_input")
        if event.topic != "tool.taskupdate.completed" or not isinstance(tool_input, dict):
            return []
        task_id, status = tool_input.get("taskId"), tool_input.get("status")
        if task_id is None or not isinstance(status, str):
            return []
        old = self._task_status.get(str(task_id))
        if old == status:
            return []
        self._task_status.remember(str(task_id), status)
        return [
            Event.new(
                "task.status.changed",
                {"taskId": str(task_id), "oldStatus": old, "newStatus": status},
                timestamp=event.timestamp,
                source=CLAUDE_CODE_SOURCE,
                correlation_id=event.correlation_id,
                causation_id=event.id,
                metadata={
                    key: event.metadata[key]
                    for key in ("projectDir", "sessionId", "promptId", "agentId")
                    if event.metadata and key in event.metadata
                },
            )
        ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
