"""TopicIndex finds exactly the selectors that `matches` would, without trying them all."""

from __future__ import annotations

import itertools
import random

from elsabro.core.topics import TopicIndex, matches

SEGMENTS = ["tool", "bash", "failed", "x", "*", "#"]


def test_lookup_agrees_with_matching_every_selector() -> None:
    rng = random.Random(7)
    selectors = sorted({".".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 4))) for _ in range(400)})
    index: TopicIndex[str] = TopicIndex()
    for selector in selectors:
        index.add(selector, selector)
    literal = [s for s in SEGMENTS if s not in ("*", "#")]
    for size in range(1, 5):
        for parts in itertools.product(literal, repeat=size):
            topic = ".".join(parts)
            expected = sorted(s for s in selectors if matches(s, topic))
            assert sorted(index.lookup(topic)) == expected, topic


def test_the_same_selector_twice_gives_both_values() -> None:
    index: TopicIndex[int] = TopicIndex()
    for value, selector in enumerate(["a.b", "a.b", "a.#", "#", "*.b", "b.#"]):
        index.add(selector, value)
    assert sorted(index.lookup("a.b")) == [0, 1, 2, 3, 4]
    assert sorted(index.lookup("a")) == [2, 3]
    assert index.lookup("c.d") == [3]
