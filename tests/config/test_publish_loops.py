"""Publish loops are found exactly, and finding them costs little even with many publishers.

Validation once walked every path between publish subscriptions: a few dozen in a
diamond pattern took seconds, sixty took minutes, with the daemon busy all along.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from pydantic import ValidationError

from elsabro.config.schema import ProjectConfig


def publisher(name: str, selector: str, target: str) -> dict[str, Any]:
    key = "pattern" if "*" in selector or "#" in selector else "topic"
    return {"name": name, key: selector, "handler": {"type": "publish", "topic": target}}


def looping(subscriptions: list[dict[str, Any]]) -> set[str]:
    """The names validation reports as republishing into themselves."""
    try:
        ProjectConfig.model_validate({"subscriptions": subscriptions})
    except ValidationError as exc:
        text = str(exc)
        return {s["name"] for s in subscriptions if f"subscription {s['name']!r} republishes" in text}
    return set()


def chain(length: int) -> list[dict[str, Any]]:
    """s0 -> s1 -> ... : each selects the topic the one before publishes (exact and patterns)."""
    return [publisher(f"s{i}", f"c{i}.x" if i % 2 else f"c{i}.#", f"c{i + 1}.x") for i in range(length)]


def diamond(layers: int) -> list[dict[str, Any]]:
    """Two publishers per layer, each feeding both of the next: 2^layers paths end to end."""
    return [publisher(f"d{i}{side}", f"l{i}.#", f"l{i + 1}.{side}") for i in range(layers) for side in "ab"]


def test_a_long_chain_is_no_loop_until_its_end_feeds_its_start() -> None:
    subs = chain(200)
    assert looping(subs) == set()
    closed = [*subs[:-1], publisher("s199", "c199.#", "c0.x")]
    assert looping(closed) == {s["name"] for s in closed}
    # a loop in the middle names only its members, not what leads into it or out of it
    middle = [*subs[:-1], publisher("s199", "c199.#", "c200.x"), publisher("back", "c150.x", "c100.x")]
    # (s150 selects c150.x too, but nothing it leads to comes back)
    assert looping(middle) == {f"s{i}" for i in range(100, 150)} | {"back"}


def test_diamonds_are_no_loop_and_a_back_edge_makes_exactly_its_cycle_one() -> None:
    subs = diamond(100)
    assert looping(subs) == set()
    back = [*subs, publisher("back", "l60.a", "l40.x")]
    inside = {f"d{i}{side}" for i in range(40, 60) for side in "ab"}
    # `back` hears only d59a (d59b publishes l60.b), so d59b is on no loop
    assert looping(back) == inside - {"d59b"} | {"back"}


@pytest.mark.parametrize("shape", ["chain", "diamond"])
def test_validating_500_publishers_takes_well_under_five_seconds(shape: str) -> None:
    subs = chain(500) if shape == "chain" else diamond(250)
    # In a child process, so that the exponential search of old stops at the deadline.
    script = (
        "import json, sys\n"
        "from elsabro.config.schema import ProjectConfig\n"
        "ProjectConfig.model_validate(json.loads(sys.stdin.read()))\n"
    )
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({"subscriptions": subs}),
        text=True,
        check=True,
        timeout=20,
    )
    elapsed_s = time.monotonic() - started
    print(f"{shape}: {len(subs)} publishers validated in {elapsed_s:.2f} s (with interpreter start)")
    assert elapsed_s < 5, elapsed_s  # a generous bound: it takes a fraction of a second
