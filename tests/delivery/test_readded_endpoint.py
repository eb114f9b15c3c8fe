"""A webhook endpoint removed from the config and added again starts at the log's end.

Its persisted cursor used to outlive it: re-added under the same id, it resumed where the
old one stood and sent the new receiver every event of the meantime.
"""

from __future__ import annotations

import json
from typing import Any

from receiver import Receiver
from support import DaemonProcess, World, configure, wait_until


def write_config(world: World, endpoints: list[dict[str, Any]]) -> None:
    retry = {"maxAttempts": 5, "backoff": "linear", "initialDelay": 60_000, "maxDelay": 60_000}
    configure(world, {"events": {"webhooks": {"endpoints": endpoints, "retry": retry}}})


def running(world: World) -> list[str]:
    rows = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
    return [row["name"] for row in rows]


def numbers(receiver: Receiver) -> list[int]:
    return [json.loads(hit.body)["data"]["n"] for hit in receiver.at("/ci")]


def test_an_endpoint_removed_and_added_again_gets_only_what_comes_after(
    world: World, receiver: Receiver
) -> None:
    ci = {"id": "ci", "url": f"{receiver.url}/ci", "events": ["*"]}
    receiver.always["/ci"] = 500  # the first event stays in flight: the cursor stays behind it
    write_config(world, [ci])
    DaemonProcess(world).start()
    for n in (1, 2, 3):
        world.client().publish({"topic": "job.done", "payload": {"n": n}})
    wait_until(lambda: numbers(receiver) == [1], what="the first attempt, failed")

    write_config(world, [])
    wait_until(lambda: running(world) == [], what="the endpoint removed")
    world.client().publish({"topic": "job.done", "payload": {"n": 4}})
    with receiver.lock:
        receiver.always.pop("/ci")

    write_config(world, [ci])
    wait_until(lambda: running(world) == ["webhook:ci"], what="the endpoint added again")
    world.client().publish({"topic": "job.done", "payload": {"n": 5}})
    wait_until(lambda: 5 in numbers(receiver), what="the event published after the re-add")
    assert numbers(receiver) == [1, 5]

    cursors = json.loads((world.project / ".elsabro" / "cursors.json").read_text())
    assert cursors["webhook:ci"] >= 4  # what it had not sent before its removal is not owed
