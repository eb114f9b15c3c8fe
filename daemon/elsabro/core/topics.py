"""Topics and topic patterns.

A topic is dot-separated segments (`tool.bash.completed`). A pattern may use, as the
seed does, `*` for exactly one segment and `#` for any number of segments, zero
included (`tool.#` matches `tool` and `tool.bash.completed`; `tool.*.failed` matches
`tool.bash.failed` but not `tool.mcp.x.failed`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Generic, TypeVar

from elsabro.core.errors import UsageError

MAX_TOPIC_CHARS = 256
# Letters, digits and the punctuation tool names use (`mcp__github__create_issue`, `a-b`, `x:y`).
_SEGMENT = re.compile(r"[A-Za-z0-9_\-:]+\Z")

T = TypeVar("T")


def check_topic(topic: str) -> None:
    """Raise UsageError unless `topic` is a publishable topic (no wildcards)."""
    _check(topic, wildcards=False)


def check_pattern(pattern: str) -> None:
    """Raise UsageError unless `pattern` is a valid topic pattern."""
    _check(pattern, wildcards=True)


def _check(text: str, *, wildcards: bool) -> None:
    kind = "pattern" if wildcards else "topic"
    if not text:
        raise UsageError(f"empty {kind}")
    if len(text) > MAX_TOPIC_CHARS:
        raise UsageError(f"{kind} longer than {MAX_TOPIC_CHARS} characters")
    for segment in text.split("."):
        if wildcards and segment in ("*", "#"):
            continue
        if not _SEGMENT.match(segment):
            hint = "" if wildcards else " (wildcards * and # are for patterns)"
            raise UsageError(
                f"invalid {kind} {text!r}: segment {segment!r} must be letters, digits, _ - :{hint}"
            )


@lru_cache(maxsize=4096)
def _segments(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


def matches(pattern: str, topic: str) -> bool:
    """True if `topic` matches `pattern` (`*` one segment, `#` zero or more)."""
    if "*" not in pattern and "#" not in pattern:
        return pattern == topic
    return _match(_segments(pattern), _segments(topic))


def _match(pat: tuple[str, ...], top: tuple[str, ...]) -> bool:
    # reachable[j]: the pattern prefix seen so far can consume exactly the first j segments.
    reachable = [True] + [False] * len(top)
    for seg in pat:
        if seg == "#":
            # Zero or more: once a prefix is reachable, every longer one is too.
            seen = False
            for j in range(len(reachable)):
                seen = seen or reachable[j]
                reachable[j] = seen
        else:
            for j in range(len(top), 0, -1):
                reachable[j] = reachable[j - 1] and (seg == "*" or seg == top[j - 1])
            reachable[0] = False
    return reachable[-1]


class TopicIndex(Generic[T]):
    """Selectors (topics or patterns) and what each selects for, looked up by topic without
    trying every selector: exact topics in a dict, patterns by their first segment when it
    is literal (`tool.*.failed` is only tried on topics under `tool`), the rest in a list."""

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        self._by_first: dict[str, list[tuple[str, T]]] = {}
        self._anywhere: list[tuple[str, T]] = []

    def add(self, selector: str, value: T) -> None:
        if "*" not in selector and "#" not in selector:
            self._exact.setdefault(selector, []).append(value)
            return
        first = selector.split(".", 1)[0]
        if first in ("*", "#"):
            self._anywhere.append((selector, value))
        else:
            self._by_first.setdefault(first, []).append((selector, value))

    def lookup(self, topic: str) -> list[T]:
        """What every selector matching `topic` was added with, in no particular order."""
        found = list(self._exact.get(topic, ()))
        candidates = self._by_first.get(topic.split(".", 1)[0], [])
        found += [value for selector, value in candidates if matches(selector, topic)]
        found += [value for selector, value in self._anywhere if matches(selector, topic)]
        return found
