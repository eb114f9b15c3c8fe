"""The fixed end-to-end scenario played by :mod:`fake_anthropic` in ONE ``claude -p`` run.

Main conversation, one tool batch per assistant turn:

0. Bash ``echo hello``                       -> PostToolUse
1. Bash ``exit 3``                           -> PostToolUseFailure
1b. Bash ``mkdir -p sub && cd sub && pwd``   -> CwdChanged (the session's directory moves)
2. Write ``<project>/e2e-note.txt``
3. Read it
4. Edit it
5. two Bash calls in ONE reply (a parallel batch: one PostToolBatch with two tool_calls)
6. TaskCreate                                -> TaskCreated
7. TaskUpdate status=completed               -> TaskCompleted
8. Agent (subagent), whose own conversation makes one Bash call, then answers
9. final text, end_turn                      -> Stop, then SessionEnd

Requests are told apart by marker strings in the first user message (the CLI prepends system
reminders to it, hence substring matching) and by carrying a ``tools`` array: side requests such as
title generation may quote the prompt but carry no tools, so they never advance the script.
"""

from __future__ import annotations

import os
import re
from typing import Any

from fake_anthropic import Block, assistant_turns, first_user_text, text, tool_results, tool_use

MAIN_MARKER = "ELSABRO-E2E-MAIN"
SUB_MARKER = "ELSABRO-E2E-SUBAGENT"
PROMPT = f"{MAIN_MARKER}: run the scripted end-to-end scenario."
NOTE_NAME = "e2e-note.txt"
SUB_DIR = "sub"
FINAL_TEXT = "Scenario complete."
SUB_FINAL_TEXT = "Subagent finished its check."
ALLOWED_TOOLS = "Bash Write Read Edit Agent TaskCreate TaskUpdate"

# Fixed tool_use ids so hook payloads can be matched to scenario steps (the CLI passes them through).
ID = {
    "bash_ok": "toolu_e2e_01_bash_ok",
    "bash_fail": "toolu_e2e_02_bash_fail",
    "bash_cd": "toolu_e2e_02b_bash_cd",
    "write": "toolu_e2e_03_write",
    "read": "toolu_e2e_04_read",
    "edit": "toolu_e2e_05_edit",
    "par_a": "toolu_e2e_06_par_a",
    "par_b": "toolu_e2e_07_par_b",
    "task_create": "toolu_e2e_08_task_create",
    "task_update": "toolu_e2e_09_task_update",
    "agent": "toolu_e2e_10_agent",
    "sub_bash": "toolu_e2e_11_sub_bash",
}


def _task_id_from_results(body: dict[str, Any]) -> str:
    """The id TaskCreate reported (``Task #1 created ...``); '1' in a fresh HOME, parsed to be safe."""
    for result in reversed(tool_results(body)):
        if result.get("tool_use_id") != ID["task_create"]:
            continue
        content = result.get("content")
        raw = (
            content
            if isinstance(content, str)
            else " ".join(str(c.get("text", "")) for c in content or [] if isinstance(c, dict))
        )
        match = re.search(r"#\s*(\d+)", raw) or re.search(r"\b(\d+)\b", raw)
        if match:
            return match.group(1)
    return "1"


class Scenario:
    """Callable script for :class:`fake_anthropic.FakeAnthropic`, bound to one project directory."""

    def __init__(self, project_dir: str) -> None:
        self.project_dir = os.path.abspath(project_dir)
        self.note_path = os.path.join(self.project_dir, NOTE_NAME)

    def main_step(self, step: int, body: dict[str, Any]) -> list[Block]:
        note = self.note_path
        steps: list[list[Block]] = [
            [tool_use(ID["bash_ok"], "Bash", {"command": "echo hello", "description": "Say hello"})],
            [tool_use(ID["bash_fail"], "Bash", {"command": "exit 3", "description": "Fail on purpose"})],
            [
                tool_use(
                    ID["bash_cd"],
                    "Bash",
                    {
                        "command": f"mkdir -p {SUB_DIR} && cd {SUB_DIR} && pwd",
                        "description": "Change directory",
                    },
                )
            ],
            [tool_use(ID["write"], "Write", {"file_path": note, "content": "alpha\nbeta\n"})],
            [tool_use(ID["read"], "Read", {"file_path": note})],
            [tool_use(ID["edit"], "Edit", {"file_path": note, "old_string": "beta", "new_string": "gamma"})],
            [
                text("Running two commands in parallel."),
                tool_use(ID["par_a"], "Bash", {"command": "echo par-a", "description": "Parallel A"}),
                tool_use(ID["par_b"], "Bash", {"command": "echo par-b", "description": "Parallel B"}),
            ],
            [
                tool_use(
                    ID["task_create"],
                    "TaskCreate",
                    {
                        "subject": "E2E task",
                        "description": "Track the e2e scenario",
                        "activeForm": "Tracking the e2e scenario",
                    },
                )
            ],
            [
                tool_use(
                    ID["task_update"],
                    "TaskUpdate",
                    {"taskId": _task_id_from_results(body), "status": "completed"},
                )
            ],
            [
                tool_use(
                    ID["agent"],
                    "Agent",
                    {
                        "description": "E2E subagent check",
                        "prompt": f"{SUB_MARKER}: run one shell command and report.",
                        "subagent_type": "general-purpose",
                    },
                )
            ],
        ]
        return steps[step] if step < len(steps) else [text(FINAL_TEXT)]

    @staticmethod
    def sub_step(step: int) -> list[Block]:
        if step == 0:
            return [
                tool_use(
                    ID["sub_bash"], "Bash", {"command": "echo from-subagent", "description": "Subagent echo"}
                )
            ]
        return [text(SUB_FINAL_TEXT)]

    def __call__(self, body: dict[str, Any]) -> list[Block] | None:
        tool_names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if "Bash" not in tool_names:
            return None  # side request (title, haiku, quota probe...): answered with plain text
        first = first_user_text(body)
        if SUB_MARKER in first:  # a subagent's first user message is the Agent tool's prompt
            return self.sub_step(assistant_turns(body))
        if MAIN_MARKER in first:
            return self.main_step(assistant_turns(body), body)
        return None


#: Hook events the scenario raises in 2.1.197 via settings hooks (observed, see NOTES.md), as
#: (hook_event_name, tool_name, tool_use_id, raised inside the subagent). Compare as a multiset: the
#: order of InstructionsLoaded vs UserPromptSubmit and of the two parallel calls' hooks varies.
EXPECTED_HOOKS: list[tuple[str, str | None, str | None, bool]] = [
    ("SessionStart", None, None, False),
    ("InstructionsLoaded", None, None, False),  # only because the project has a CLAUDE.md
    ("UserPromptSubmit", None, None, False),
    *[
        ev
        for key, tool in (
            ("bash_ok", "Bash"),
            ("bash_fail", "Bash"),
            ("write", "Write"),
            ("read", "Read"),
            ("edit", "Edit"),
        )
        for ev in (
            ("PreToolUse", tool, ID[key], False),
            ("PostToolUseFailure" if key == "bash_fail" else "PostToolUse", tool, ID[key], False),
            ("PostToolBatch", None, None, False),
        )
    ],
    ("PreToolUse", "Bash", ID["bash_cd"], False),
    ("PostToolUse", "Bash", ID["bash_cd"], False),
    ("CwdChanged", None, None, False),  # only to settings hooks, never to a plugin's
    ("PostToolBatch", None, None, False),
    ("MessageDisplay", None, None, False),  # the text block before the parallel calls
    ("PreToolUse", "Bash", ID["par_a"], False),
    ("PreToolUse", "Bash", ID["par_b"], False),
    ("PostToolUse", "Bash", ID["par_a"], False),
    ("PostToolUse", "Bash", ID["par_b"], False),
    ("PostToolBatch", None, None, False),  # ONE batch for both parallel calls
    ("PreToolUse", "TaskCreate", ID["task_create"], False),
    ("TaskCreated", None, None, False),
    ("PostToolUse", "TaskCreate", ID["task_create"], False),
    ("PostToolBatch", None, None, False),
    ("PreToolUse", "TaskUpdate", ID["task_update"], False),
    ("TaskCompleted", None, None, False),
    ("PostToolUse", "TaskUpdate", ID["task_update"], False),
    ("PostToolBatch", None, None, False),
    ("PreToolUse", "Agent", ID["agent"], False),
    ("SubagentStart", None, None, True),
    ("PreToolUse", "Bash", ID["sub_bash"], True),
    ("PostToolUse", "Bash", ID["sub_bash"], True),
    ("PostToolBatch", None, None, True),
    ("SubagentStop", None, None, True),  # the subagent's final text raises no MessageDisplay
    ("PostToolUse", "Agent", ID["agent"], False),
    ("PostToolBatch", None, None, False),
    ("MessageDisplay", None, None, False),  # the final text
    ("Stop", None, None, False),
    ("SessionEnd", None, None, False),
]


#: The topic of the prompt Claude Code submits itself when a background subagent finishes.
TASK_NOTIFICATION_TOPIC = "prompt.task_notification"

#: CwdChanged never reaches a plugin's hooks (2.1.197 and 2.1.332): only settings hooks get it.
PLUGIN_BLIND = ("CwdChanged",)


def expected_hooks(version: str, mode: str = "settings") -> list[tuple[str, str | None, str | None, bool]]:
    """The hook events ``version`` raises for the scenario, as observed (NOTES.md), by route.

    ``mode`` is the route the recorder is registered by: "settings" (everything) or "plugin"
    (everything a plugin receives: no CwdChanged). 2.1.332 runs the Agent subagent in the
    background: its result comes back as a second UserPromptSubmit (a ``<task-notification>``)
    answered by a second final text, so one more UserPromptSubmit, MessageDisplay and Stop.
    """
    hooks = list(EXPECTED_HOOKS)
    if version != "2.1.197":
        hooks += [
            ("UserPromptSubmit", None, None, False),
            ("MessageDisplay", None, None, False),
            ("Stop", None, None, False),
        ]
    if mode == "plugin":
        hooks = [hook for hook in hooks if hook[0] not in PLUGIN_BLIND]
    return hooks
