"""A failure is reported once: `event.handler.failed` never causes another one.

Two subscriptions on `#` that both fail would otherwise hear of each other's failure,
fail on it, publish a failure about that failure, and so on for ever (a storm that grows
the log without bound). A real daemon, real `sh` handlers.
"""

from __future__ import annotations

import json
from typing import Any

from support import DaemonProcess, World, configure, wait_until

FAILED = "event.handler.failed"


def write_config(world: World, config: dict[str, Any]) -> None:
    configure(world, config)  # trusted, and replaced whole


def failing(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "pattern": "#",
        "handler": {"type": "exec", "argv": ["sh", "-c", "echo broken >&2; exit 7"]},
        "options": {"maxRetries": 0},
    }


def dead_letters(world: World) -> list[dict[str, Any]]:
    path = world.project / ".elsabro" / "deadletters.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def settled(world: World) -> bool:
    rows = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
    return bool(rows) and all(row["lag"] == 0 and row["inFlight"] is None for row in rows)


def test_two_failing_subscriptions_on_everything_do_not_feed_each_other(world: World) -> None:
    write_config(world, {"subscriptions": [failing("left"), failing("right")]})
    DaemonProcess(world).start()
    before = len(world.events())
    stored = world.client().publish({"topic": "deploy.started", "payload": {"v": 1}})

    # Each fails on the original (2 dead letters, 2 failure events), then each fails on the
    # other's failure event (2 more dead letters, and no failure event about those).
    wait_until(lambda: len(dead_letters(world)) >= 4 and settled(world), what="the dead letters to settle")
    # Settled means nothing is in flight and every cursor is at the head: nothing more can come.
    new = world.events()[before:]
    failures = [r for r in new if r["topic"] == FAILED]
    assert len(new) == 3, [r["topic"] for r in new]
    assert sorted(f["payload"]["subscription"] for f in failures) == ["left", "right"]
    assert all(f["causationId"] == stored["id"] for f in failures)

    letters = dead_letters(world)
    assert len(letters) == 4
    about_failures = [d for d in letters if d["originalEvent"]["topic"] == FAILED]
    assert sorted(d["subscriber"] for d in about_failures) == ["left", "right"]
    # each heard only of the other's failure, never of its own
    assert all(d["originalEvent"]["payload"]["subscription"] != d["subscriber"] for d in about_failures)
    assert settled(world) and len(world.events()) == before + 3
