"""Fast checks of the fake Messages API and the scenario script (no Claude Code CLI needed)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import fake_anthropic
from fake_anthropic import FakeAnthropic, text, tool_use
from scenario import ID, MAIN_MARKER, SUB_MARKER, Scenario

TOOLS = [{"name": "Bash", "input_schema": {"type": "object"}}]


def _call(
    api: FakeAnthropic, path: str, body: dict[str, Any] | None = None, method: str = "POST"
) -> tuple[int, str, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        api.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def _sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]


def test_head_count_tokens_and_side_request() -> None:
    with FakeAnthropic(lambda body: None) as api:
        assert _call(api, "/", method="HEAD")[0] == 200
        status, _, raw = _call(api, "/v1/messages/count_tokens?beta=true", {"messages": []})
        assert status == 200 and json.loads(raw)["input_tokens"] > 0
        # No tools: a side request (e.g. title generation) gets plain text, non-streaming here.
        _, ctype, raw = _call(api, "/v1/messages", {"model": "m", "messages": []})
        reply = json.loads(raw)
        assert ctype.startswith("application/json")
        assert reply["content"] == [text(fake_anthropic.SIDE_REPLY_TEXT)]
        assert reply["stop_reason"] == "end_turn"
        assert [r["answered"] for r in api.requests] == ["head", "count_tokens", "side"]


def test_streamed_tool_use_events() -> None:
    blocks = [text("hi"), tool_use("toolu_x", "Bash", {"command": "echo a"})]
    with FakeAnthropic(lambda body: blocks) as api:
        _, ctype, raw = _call(api, "/v1/messages?beta=true", {"stream": True, "tools": TOOLS, "messages": []})
    assert ctype == "text/event-stream"
    events = _sse_events(raw)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {}}
    assert json.loads(events[5]["delta"]["partial_json"]) == {"command": "echo a"}
    assert events[7]["delta"]["stop_reason"] == "tool_use"


def test_script_error_and_cap_end_the_session(monkeypatch: Any) -> None:
    def broken(body: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    with FakeAnthropic(broken) as api:
        reply = json.loads(_call(api, "/v1/messages", {"messages": []})[2])
        assert reply["stop_reason"] == "end_turn" and "boom" in reply["content"][0]["text"]
    monkeypatch.setattr(fake_anthropic, "MAX_SCRIPTED_REPLIES", 1)
    with FakeAnthropic(lambda body: [tool_use("t", "Bash", {})]) as api:
        first = json.loads(_call(api, "/v1/messages", {"messages": []})[2])
        second = json.loads(_call(api, "/v1/messages", {"messages": []})[2])
    assert first["stop_reason"] == "tool_use" and second["stop_reason"] == "end_turn"


def _conv(first: str, assistant_turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": first},
            ],
        }
    ]
    for i in range(assistant_turns):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}"}]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"t{i}",
                        "content": "Task #7 created successfully: x",
                    }
                ],
            }
        )
    return {"tools": TOOLS, "messages": messages}


def test_scenario_steps() -> None:
    scen = Scenario("/proj")
    assert scen(_conv(MAIN_MARKER, 0)) == [
        tool_use(ID["bash_ok"], "Bash", {"command": "echo hello", "description": "Say hello"})
    ]
    assert (scen(_conv(MAIN_MARKER, 2)) or [{}])[0]["input"]["command"] == "mkdir -p sub && cd sub && pwd"
    assert [b.get("id") for b in scen(_conv(MAIN_MARKER, 6)) or []] == [None, ID["par_a"], ID["par_b"]]
    assert (scen(_conv(MAIN_MARKER, 9)) or [{}])[0]["name"] == "Agent"
    assert scen(_conv(MAIN_MARKER, 10)) == [text("Scenario complete.")]
    assert (scen(_conv(SUB_MARKER, 0)) or [{}])[0]["id"] == ID["sub_bash"]
    assert (scen(_conv(SUB_MARKER, 1)) or [{}])[0]["type"] == "text"
    # Side requests: no tools, or an unknown conversation.
    assert scen({"messages": _conv(MAIN_MARKER, 0)["messages"]}) is None
    assert scen(_conv("something else", 0)) is None


def test_task_update_uses_reported_id() -> None:
    body = _conv(MAIN_MARKER, 8)
    body["messages"][-1]["content"][0]["tool_use_id"] = ID["task_create"]
    step = Scenario("/proj")(body) or [{}]
    assert step[0]["input"] == {"taskId": "7", "status": "completed"}
