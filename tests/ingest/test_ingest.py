"""Hook payload -> events: topics, metadata, causation links, derived task events, and `learn`.

The payloads are the real hook inputs of Claude Code 2.1.197 in fixtures/claude-code-2.1.197.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from elsabro.core.errors import BadRequest
from elsabro.core.model import Event
from elsabro.core.topics import MAX_TOPIC_CHARS, check_topic
from elsabro.ingest.hooks import TOPICS, Ingest, topic_for
from support import FIXTURES

HOOKS = FIXTURES / "claude-code-2.1.197"
PROJECT = "/home/dev/work/demo"  # CLAUDE_PROJECT_DIR of every fixture
SESSION = "bfe9dca2-013a-45bd-b0c0-8abbde0f319d"
PROMPT = "d8734374-1644-4ee6-a117-0f31b6484293"

# Fixture (hook event) -> the topic its payload must get, written out by hand.
EXPECTED_TOPICS = {
    "ConfigChange": "config.changed",
    "CwdChanged": "cwd.changed",
    "Elicitation": "elicitation.requested",
    "ElicitationResult": "elicitation.answered",
    "FileChanged": "file.changed",
    "InstructionsLoaded": "instructions.loaded",
    "MessageDisplay": "message.displayed",
    "Notification": "notification.elicitation_response",
    "PermissionDenied": "permission.denied",
    "PermissionRequest": "permission.requested",
    "PostCompact": "context.compacted",
    "PostToolBatch": "toolbatch.completed",
    "PostToolUse": "tool.bash.completed",
    "PostToolUseFailure": "tool.bash.failed",
    "PreCompact": "context.compacting",
    "PreToolUse": "tool.bash.started",
    "SessionEnd": "session.ended",
    "SessionStart": "session.started",
    "Setup": "session.setup",
    "Stop": "turn.completed",
    "StopFailure": "turn.failed",
    "SubagentStart": "agent.started",
    "SubagentStop": "agent.completed",
    "TaskCompleted": "task.completed",
    "TaskCreated": "task.created",
    "UserPromptExpansion": "prompt.expanded",
    "UserPromptSubmit": "prompt.submitted",
}
EXPECTED_TYPES = {
    "tool.bash.completed": "ToolBashCompleted",
    "tool.bash.failed": "ToolBashFailed",
    "notification.elicitation_response": "NotificationElicitation_response",
    "agent.started": "AgentStarted",
    "session.setup": "SessionSetup",
}
# Hook input field -> metadata key, for the fields that metadata carries when present.
METADATA_FIELDS = {
    "prompt_id": "promptId",
    "agent_id": "agentId",
    "agent_type": "agentType",
    "tool_name": "toolName",
    "tool_use_id": "toolUseId",
    "duration_ms": "durationMs",
}


@cache
def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HOOKS / f"{name}.json").read_text())
    return data


def hook(name: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of a fixture's hook input, with some fields replaced."""
    payload = copy.deepcopy(_fixture(name)["stdin"])
    payload.update(changes)
    return payload


def one(ingest: Ingest, payload: dict[str, Any]) -> Event:
    """The single event a payload yields (failing if it yields derived events too)."""
    events = ingest.events(payload)
    assert len(events) == 1, [e.topic for e in events]
    return events[0]


def task_update(tool_input: dict[str, Any], tool_use_id: str = "toolu_update_1") -> dict[str, Any]:
    return hook(
        "PostToolUse",
        tool_name="TaskUpdate",
        tool_input=tool_input,
        tool_use_id=tool_use_id,
        tool_response={"success": True},
    )


# -- every real payload --------------------------------------------------------------


def test_there_is_an_expected_topic_for_every_fixture() -> None:
    assert sorted(path.stem for path in HOOKS.glob("*.json")) == sorted(EXPECTED_TOPICS)


@pytest.mark.parametrize(("name", "topic"), EXPECTED_TOPICS.items(), ids=list(EXPECTED_TOPICS))
def test_real_payload_maps_to_its_topic_source_and_session(name: str, topic: str) -> None:
    fixture = _fixture(name)
    assert fixture["hook_event_name"] == fixture["stdin"]["hook_event_name"] == name
    payload = hook(name)
    original = copy.deepcopy(payload)

    event = one(Ingest(fixture["env"]["CLAUDE_PROJECT_DIR"]), payload)

    assert event.topic == topic
    check_topic(event.topic)
    assert event.source == "claude-code"
    assert event.correlation_id == fixture["env"]["CLAUDE_CODE_SESSION_ID"] == original["session_id"]
    assert event.payload == original
    assert payload == original  # the hook input is not modified either
    assert event.id.startswith("evt_")


@pytest.mark.parametrize("name", EXPECTED_TOPICS, ids=list(EXPECTED_TOPICS))
def test_real_payload_metadata_has_exactly_the_fields_the_payload_has(name: str) -> None:
    payload = hook(name)
    expected = {"hookEvent": name, "projectDir": PROJECT, "sessionId": payload["session_id"]}
    expected.update({key: payload[field] for field, key in METADATA_FIELDS.items() if field in payload})

    assert one(Ingest(PROJECT), payload).metadata == expected


@pytest.mark.parametrize(("topic", "type_"), EXPECTED_TYPES.items(), ids=list(EXPECTED_TYPES))
def test_type_is_inferred_from_the_topic(topic: str, type_: str) -> None:
    name = next(name for name, t in EXPECTED_TOPICS.items() if t == topic)
    assert one(Ingest(PROJECT), hook(name)).type == type_


def test_tool_event_metadata_is_exact() -> None:
    event = one(Ingest(PROJECT), hook("PostToolUse"))
    assert event.metadata == {
        "hookEvent": "PostToolUse",
        "projectDir": PROJECT,
        "sessionId": SESSION,
        "promptId": PROMPT,
        "toolName": "Bash",
        "toolUseId": "toolu_cd3c7d1ec8b24d719c67",
        "durationMs": 29,
    }


def test_agent_event_metadata_is_exact() -> None:
    event = one(Ingest(PROJECT), hook("SubagentStart"))
    assert event.metadata == {
        "hookEvent": "SubagentStart",
        "projectDir": PROJECT,
        "sessionId": SESSION,
        "promptId": PROMPT,
        "agentId": "a3bf0f3cf984b03e6",
        "agentType": "general-purpose",
    }


def test_session_start_without_prompt_has_no_prompt_id() -> None:
    event = one(Ingest("/elsewhere"), hook("SessionStart"))
    assert event.metadata == {"hookEvent": "SessionStart", "projectDir": "/elsewhere", "sessionId": SESSION}


def test_timestamp_is_kept_when_given() -> None:
    events = Ingest(PROJECT).events(hook("Stop"), timestamp="2025-01-02T03:04:05.678Z")
    assert [e.timestamp for e in events] == ["2025-01-02T03:04:05.678Z"]


# -- topics --------------------------------------------------------------------------

TOPIC_CASES = [
    ({"hook_event_name": "PreToolUse", "tool_name": "Bash"}, "tool.bash.started"),
    ({"hook_event_name": "PostToolUse", "tool_name": "Read"}, "tool.read.completed"),
    ({"hook_event_name": "PostToolUseFailure", "tool_name": "Edit"}, "tool.edit.failed"),
    (
        {"hook_event_name": "PreToolUse", "tool_name": "mcp__github__create_issue"},
        "tool.mcp__github__create_issue.started",
    ),
    (
        {"hook_event_name": "PostToolUse", "tool_name": "mcp__my-server__do:it"},
        "tool.mcp__my-server__do:it.completed",
    ),
    ({"hook_event_name": "PreToolUse"}, "tool.unknown.started"),
    ({"hook_event_name": "PreToolUse", "tool_name": "a.b c"}, "tool.a_b_c.started"),
    (
        {"hook_event_name": "Notification", "notification_type": "permission_prompt"},
        "notification.permission_prompt",
    ),
    ({"hook_event_name": "Notification", "notification_type": "idle_prompt"}, "notification.idle_prompt"),
    ({"hook_event_name": "Notification"}, "notification.other"),
    ({"hook_event_name": "TeammateIdle"}, "teammate.idle"),
    ({"hook_event_name": "WorktreeCreate"}, "hook.worktree_create"),
    ({"hook_event_name": "WorktreeRemove"}, "hook.worktree_remove"),
    ({"hook_event_name": "SomeNewEvent2"}, "hook.some_new_event2"),
    ({"hook_event_name": "!!!"}, "hook.unknown"),
]


@pytest.mark.parametrize(
    ("payload", "topic"), TOPIC_CASES, ids=[f"{p['hook_event_name']}-{t}" for p, t in TOPIC_CASES]
)
def test_topic_for_maps_the_hook_event_to_its_topic(payload: dict[str, Any], topic: str) -> None:
    assert topic_for(payload) == topic


@pytest.mark.parametrize("name", ["WorktreeCreate", "SomeNewEvent2", "lower_case", "Weird Name!"])
def test_unknown_hook_event_is_never_refused(name: str) -> None:
    payload = hook("Stop", hook_event_name=name)
    event = one(Ingest(PROJECT), payload)
    assert event.topic.startswith("hook.")
    check_topic(event.topic)
    assert event.metadata is not None and event.metadata["hookEvent"] == name
    assert event.payload == payload


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"session_id": SESSION},
        {"hook_event_name": ""},
        {"hook_event_name": None},
        {"hook_event_name": 3},
        ["PreToolUse"],
        "PreToolUse",
        None,
        7,
    ],
    ids=["empty", "no-name", "empty-name", "null-name", "int-name", "list", "string", "null", "int"],
)
def test_payload_without_hook_event_name_or_not_an_object_is_a_bad_request(payload: Any) -> None:
    with pytest.raises(BadRequest):
        Ingest(PROJECT).events(payload)


LONG = "x" * 300


@pytest.mark.parametrize(
    "payload",
    [
        {"hook_event_name": "PreToolUse", "tool_name": f"mcp__server__{LONG}"},
        {"hook_event_name": "Notification", "notification_type": LONG},
        {"hook_event_name": "Some" + LONG},
    ],
    ids=["long-tool-name", "long-notification-type", "long-unknown-event"],
)
def test_long_names_still_give_a_valid_topic(payload: dict[str, Any]) -> None:
    topic = topic_for(payload)
    assert len(topic) <= MAX_TOPIC_CHARS
    check_topic(topic)


_NAME_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text())


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {"hook_event_name": st.one_of(st.sampled_from(sorted(TOPICS)), st.text(min_size=1))},
        optional={"tool_name": _NAME_VALUES, "notification_type": _NAME_VALUES},
    )
)
@example({"hook_event_name": "PostToolUse", "tool_name": "mcp__" + "y" * 260})
def test_topic_for_gives_a_valid_topic_for_any_named_payload(payload: dict[str, Any]) -> None:
    check_topic(topic_for(payload))


# -- causation -----------------------------------------------------------------------


def test_completed_tool_event_is_caused_by_its_started_event() -> None:
    ingest = Ingest(PROJECT)
    started = one(ingest, hook("PreToolUse"))
    completed = one(ingest, hook("PostToolUse"))

    assert started.causation_id is None
    assert completed.causation_id == started.id
    assert completed.correlation_id == started.correlation_id == SESSION


def test_failed_tool_event_is_caused_by_its_started_event() -> None:
    ingest = Ingest(PROJECT)
    failing_use = hook("PostToolUseFailure")["tool_use_id"]
    started = one(ingest, hook("PreToolUse", tool_use_id=failing_use))
    failed = one(ingest, hook("PostToolUseFailure"))

    assert failed.topic == "tool.bash.failed"
    assert failed.causation_id == started.id


def test_completed_event_links_to_the_start_with_the_same_tool_use_id() -> None:
    ingest = Ingest(PROJECT)
    first = one(ingest, hook("PreToolUse", tool_use_id="toolu_a"))
    second = one(ingest, hook("PreToolUse", tool_use_id="toolu_b"))

    assert one(ingest, hook("PostToolUse", tool_use_id="toolu_b")).causation_id == second.id
    assert one(ingest, hook("PostToolUse", tool_use_id="toolu_a")).causation_id == first.id
    assert one(ingest, hook("PostToolUse", tool_use_id="toolu_c")).causation_id is None


def test_mcp_tool_completion_links_to_its_start() -> None:
    ingest = Ingest(PROJECT)
    name = "mcp__github__create_issue"
    started = one(ingest, hook("PreToolUse", tool_name=name, tool_use_id="toolu_mcp"))
    completed = one(ingest, hook("PostToolUse", tool_name=name, tool_use_id="toolu_mcp"))

    assert (started.topic, completed.topic) == (f"tool.{name}.started", f"tool.{name}.completed")
    assert completed.causation_id == started.id


def test_unpaired_completed_event_is_produced_without_a_cause() -> None:
    completed = one(Ingest(PROJECT), hook("PostToolUse"))
    assert completed.topic == "tool.bash.completed"
    assert completed.causation_id is None


def test_completed_event_arriving_before_its_start_has_no_cause_and_is_not_held_back() -> None:
    ingest = Ingest(PROJECT)
    completed = ingest.events(hook("PostToolUse"))
    started = ingest.events(hook("PreToolUse"))

    assert [e.topic for e in completed] == ["tool.bash.completed"]
    assert completed[0].causation_id is None
    assert [e.topic for e in started] == ["tool.bash.started"]
    assert started[0].causation_id is None


def test_permission_denied_is_not_linked_to_the_tool_start() -> None:
    ingest = Ingest(PROJECT)
    denied = hook("PermissionDenied")
    one(ingest, hook("PreToolUse", tool_use_id=denied["tool_use_id"]))
    assert one(ingest, denied).causation_id is None


def test_agent_completed_is_caused_by_agent_started() -> None:
    ingest = Ingest(PROJECT)
    started = one(ingest, hook("SubagentStart"))
    stopped = one(ingest, hook("SubagentStop"))

    assert stopped.topic == "agent.completed"
    assert stopped.causation_id == started.id


def test_agent_completed_links_by_agent_id_only() -> None:
    ingest = Ingest(PROJECT)
    one(ingest, hook("SubagentStart", agent_id="agent_other"))
    assert one(ingest, hook("SubagentStop")).causation_id is None


def test_subagent_stop_of_compaction_without_start_is_produced_without_a_cause() -> None:
    payload = hook("SubagentStop", agent_type="", agent_id="acompact1234")
    stopped = one(Ingest(PROJECT), payload)

    assert stopped.topic == "agent.completed"
    assert stopped.causation_id is None
    assert stopped.payload == payload


# -- derived task.status.changed -------------------------------------------------------


def test_task_update_that_sets_a_status_yields_task_status_changed_right_after_it() -> None:
    ingest = Ingest(PROJECT)
    one(ingest, hook("TaskCreated"))

    events = ingest.events(task_update({"taskId": "1", "status": "completed"}))

    assert [e.topic for e in events] == ["tool.taskupdate.completed", "task.status.changed"]
    tool, changed = events
    assert changed.payload == {"taskId": "1", "oldStatus": "pending", "newStatus": "completed"}
    assert changed.type == "TaskStatusChanged"
    assert changed.source == "claude-code"
    assert changed.causation_id == tool.id
    assert changed.correlation_id == tool.correlation_id == SESSION
    assert changed.timestamp == tool.timestamp
    assert changed.id != tool.id
    assert changed.metadata == {"projectDir": PROJECT, "sessionId": SESSION, "promptId": PROMPT}


def test_task_update_of_unknown_task_has_no_old_status() -> None:
    events = Ingest(PROJECT).events(task_update({"taskId": "9", "status": "in_progress"}))
    assert [e.topic for e in events] == ["tool.taskupdate.completed", "task.status.changed"]
    assert events[1].payload == {"taskId": "9", "oldStatus": None, "newStatus": "in_progress"}


def test_successive_task_updates_carry_the_previous_status() -> None:
    ingest = Ingest(PROJECT)
    one(ingest, hook("TaskCreated"))
    first = ingest.events(task_update({"taskId": "1", "status": "in_progress"}, "toolu_u1"))
    second = ingest.events(task_update({"taskId": "1", "status": "completed"}, "toolu_u2"))

    assert first[1].payload == {"taskId": "1", "oldStatus": "pending", "newStatus": "in_progress"}
    assert second[1].payload == {"taskId": "1", "oldStatus": "in_progress", "newStatus": "completed"}


@pytest.mark.parametrize(
    "tool_input",
    [
        {"taskId": "1", "status": "pending"},
        {"taskId": "1", "subject": "Write more tests"},
        {"taskId": "1", "status": None},
        {"status": "completed"},
    ],
    ids=["same-status", "no-status", "null-status", "no-task-id"],
)
def test_task_update_that_does_not_change_a_status_yields_nothing_more(tool_input: dict[str, Any]) -> None:
    ingest = Ingest(PROJECT)
    one(ingest, hook("TaskCreated"))
    assert [e.topic for e in ingest.events(task_update(tool_input))] == ["tool.taskupdate.completed"]


def test_repeating_the_same_status_yields_nothing_the_second_time() -> None:
    ingest = Ingest(PROJECT)
    update = {"taskId": "1", "status": "completed"}
    assert len(ingest.events(task_update(update, "toolu_u1"))) == 2
    assert [e.topic for e in ingest.events(task_update(update, "toolu_u2"))] == ["tool.taskupdate.completed"]


@pytest.mark.parametrize("name", ["PreToolUse", "PostToolUseFailure"], ids=["started", "failed"])
def test_task_update_that_did_not_complete_yields_no_status_change(name: str) -> None:
    payload = hook(name, tool_name="TaskUpdate", tool_input={"taskId": "1", "status": "completed"})
    assert [e.topic for e in Ingest(PROJECT).events(payload)] == [topic_for(payload)]


# -- learn ---------------------------------------------------------------------------


def test_learned_started_event_links_a_later_completed_event() -> None:
    started = one(Ingest(PROJECT), hook("PreToolUse"))

    restarted = Ingest(PROJECT)
    restarted.learn([started.to_wire()])

    assert one(restarted, hook("PostToolUse")).causation_id == started.id


def test_learned_agent_start_links_a_later_agent_completed() -> None:
    started = one(Ingest(PROJECT), hook("SubagentStart"))

    restarted = Ingest(PROJECT)
    restarted.learn([started.to_wire()])

    assert one(restarted, hook("SubagentStop")).causation_id == started.id


def test_learned_task_status_is_the_old_status_of_the_next_update() -> None:
    before = Ingest(PROJECT)
    history = [*before.events(hook("TaskCreated"))]
    history += before.events(task_update({"taskId": "1", "status": "in_progress"}, "toolu_u1"))

    restarted = Ingest(PROJECT)
    restarted.learn(event.to_wire() for event in history)
    events = restarted.events(task_update({"taskId": "1", "status": "completed"}, "toolu_u2"))

    assert events[1].payload == {"taskId": "1", "oldStatus": "in_progress", "newStatus": "completed"}


def test_learned_task_creation_makes_the_task_pending() -> None:
    created = one(Ingest(PROJECT), hook("TaskCreated"))

    restarted = Ingest(PROJECT)
    restarted.learn([created.to_wire()])
    events = restarted.events(task_update({"taskId": "1", "status": "completed"}))

    assert events[1].payload == {"taskId": "1", "oldStatus": "pending", "newStatus": "completed"}


def test_learn_ignores_records_from_other_sources() -> None:
    started = one(Ingest(PROJECT), hook("PreToolUse"))
    record = {**started.to_wire(), "source": "elsabro"}

    restarted = Ingest(PROJECT)
    restarted.learn([record])

    assert one(restarted, hook("PostToolUse")).causation_id is None


def test_without_learning_a_fresh_ingest_does_not_link() -> None:
    one(Ingest(PROJECT), hook("PreToolUse"))
    assert one(Ingest(PROJECT), hook("PostToolUse")).causation_id is None


def test_early_events_of_a_new_session_wait_for_its_start() -> None:
    import asyncio

    from elsabro.ingest.hooks import Ingest

    async def scenario() -> None:
        ingest = Ingest("/p")
        early = asyncio.ensure_future(
            ingest.session_started({"hook_event_name": "InstructionsLoaded", "session_id": "s"})
        )
        second = asyncio.ensure_future(
            ingest.session_started({"hook_event_name": "UserPromptSubmit", "session_id": "s"})
        )
        await asyncio.sleep(0.01)
        assert not early.done() and not second.done()  # held back
        await ingest.session_started({"hook_event_name": "SessionStart", "session_id": "s"})
        await asyncio.wait_for(asyncio.gather(early, second), 1)  # released by the start

        # A session whose start never comes (a resumed session's throwaway id) waits once, briefly.
        await asyncio.wait_for(
            ingest.session_started({"hook_event_name": "Stop", "session_id": "other"}, timeout_s=0.05), 1
        )
        later = asyncio.ensure_future(
            ingest.session_started({"hook_event_name": "Stop", "session_id": "other"})
        )
        await asyncio.sleep(0)
        assert later.done()

        # A session seen in the stored records (after a restart) never waits.
        restarted = Ingest("/p")
        restarted.learn(
            [
                {
                    "id": "evt_1",
                    "topic": "tool.bash.started",
                    "source": "claude-code",
                    "correlationId": "known",
                    "metadata": {},
                    "payload": {},
                }
            ]
        )
        known = asyncio.ensure_future(
            restarted.session_started({"hook_event_name": "Stop", "session_id": "known"})
        )
        await asyncio.sleep(0)
        assert known.done()

    asyncio.run(scenario())
