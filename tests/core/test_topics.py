"""Topic grammar and the `*` / `#` pattern matcher."""

from __future__ import annotations

import pytest

from elsabro.core.errors import UsageError
from elsabro.core.topics import check_pattern, check_topic, matches

CASES = [
    # pattern, topic, expected
    ("agent.started", "agent.started", True),
    ("agent.started", "agent.completed", False),
    ("agent.*", "agent.started", True),
    ("agent.*", "agent", False),
    ("agent.*", "agent.sub.started", False),
    ("agent.#", "agent", True),
    ("agent.#", "agent.started", True),
    ("agent.#", "agent.sub.started", True),
    ("agent.#", "agents.started", False),
    ("tool.*.failed", "tool.bash.failed", True),
    ("tool.*.failed", "tool.bash.completed", False),
    ("tool.#.failed", "tool.mcp.x.failed", True),
    ("tool.#.failed", "tool.failed", True),
    ("#", "anything.at.all", True),
    ("#", "x", True),
    ("*", "x", True),
    ("*", "x.y", False),
    ("*.*", "x.y", True),
    ("#.completed", "tool.bash.completed", True),
    ("#.completed", "tool.bash.started", False),
    ("*.#.z", "a.z", True),
    ("*.#.z", "z", False),
    ("tool.mcp__github__create_issue.started", "tool.mcp__github__create_issue.started", True),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), CASES, ids=[f"{p}~{t}" for p, t, _ in CASES])
def test_pattern_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("topic", ["", "a..b", ".a", "a.", "a b", "a.*", "a.#", "x" * 300, "a/b"])
def test_invalid_topics_are_refused(topic: str) -> None:
    with pytest.raises(UsageError):
        check_topic(topic)


@pytest.mark.parametrize("pattern", ["", "a..b", "a.**", "a.#x", "a b"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(UsageError):
        check_pattern(pattern)


def test_valid_patterns_pass() -> None:
    for pattern in ("a", "a.*", "a.#", "#", "*.b.#", "tool.mcp__x-y:z.started"):
        check_pattern(pattern)
