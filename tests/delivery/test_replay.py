"""Replay into each kind of handler through a real daemon: exec, a subscription, a webhook, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elsabro.core.clock import now_iso
from receiver import Receiver
from support import DaemonProcess, World, configure, wait_until


def publish_days(world: World) -> list[dict[str, Any]]:
    """Six events in three "days" (distinct milliseconds): two per day, deploy.done and other.thing."""
    stored: list[dict[str, Any]] = []
    for day in (1, 2, 3):
        if stored:  # the next day starts on a later millisecond than the last event
            wait_until(lambda: now_iso() > stored[-1]["timestamp"], what="the clock to move")
        for topic in ("deploy.done", "other.thing"):
            stored.append(world.client().publish({"topic": topic, "payload": {"day": day}}))
    return stored


def appended(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_replay_into_a_command_in_log_order_within_the_time_range(
    world: World, daemon: DaemonProcess
) -> None:
    stored = publish_days(world)
    out = world.root / "out.jsonl"
    result = world.cli(
        "replay", "--topic", "deploy.*", "--from", stored[2]["timestamp"], "--to", stored[4]["timestamp"],
        "--exec", "/bin/sh", "-c", f"cat >> {out}; echo >> {out}",
    )  # fmt: skip
    got = appended(out)
    assert [r["id"] for r in got] == [stored[2]["id"], stored[4]["id"]]
    assert all(r["metadata"] == {"replay": True} for r in got)
    assert "replayed 2 events" in result.stdout and result.stderr == ""  # no progress bar when piped


def test_replay_to_a_subscription_leaves_its_cursor_alone(world: World) -> None:
    live = world.project / "live.jsonl"
    subscription = {
        "name": "audit",
        "pattern": "#",
        "filter": "payload.day != `2`",
        "options": {"durable": True},
        "handler": {"type": "append", "path": "live.jsonl"},
    }
    configure(world, {"subscriptions": [subscription]})
    DaemonProcess(world).start()
    stored = publish_days(world)
    wait_until(lambda: len(appended(live)) == 4, what="live delivery")

    def cursor() -> int:
        return int(world.client().call_json("GET", "/v1/subscriptions")["subscriptions"][0]["cursor"])

    # The last events are filtered out: the cursor passes them a moment after the last append.
    wait_until(lambda: cursor() == stored[-1]["sequence"], what="the cursor at the head")
    before = cursor()
    result = world.cli("replay", "--from", "1h", "--to-subscription", "audit")
    assert "replayed 4 events (2 skipped by the filter, 0 failed)" in result.stdout
    records = appended(live)
    assert [r["id"] for r in records[4:]] == [r["id"] for r in stored if r["payload"]["day"] != 2]
    assert all(r["metadata"] == {"replay": True} for r in records[4:])
    assert cursor() == before == stored[-1]["sequence"]
    assert (
        "no subscription 'nope'"
        in world.cli("replay", "--from", "1d", "--to-subscription", "nope", check=False).stderr
    )


def test_replay_to_a_webhook_marks_each_delivery(world: World, receiver: Receiver) -> None:
    endpoint = {
        "id": "hook",
        "url": f"{receiver.url}/hook",
        "events": ["deploy.#"],
        "enabled": False,  # no live deliveries: only the replay's
        "format": "cloudevents",
    }
    configure(world, {"events": {"webhooks": {"endpoints": [endpoint]}}})
    DaemonProcess(world).start()
    stored = publish_days(world)
    world.cli("replay", "--from", "1h", "--webhook", "hook")
    hits = receiver.at("/hook")
    assert [json.loads(hit.body)["id"] for hit in hits] == [
        r["id"] for r in stored if r["topic"] == "deploy.done"
    ]
    assert all(hit.headers["elsabro-replay"] == "true" for hit in hits)


def test_replay_reports_failures_and_goes_on(world: World, daemon: DaemonProcess) -> None:
    publish_days(world)
    result = world.cli("replay", "--from", "1h", "--exec", "/bin/sh", "-c", "exit 3", check=False)
    assert result.returncode == 1
    assert "replayed 0 events (0 skipped by the filter, 6 failed)" in result.stdout
    assert result.stderr.count("failed evt_") == 6
    assert not (world.project / ".elsabro" / "deadletters.jsonl").exists()


def test_replay_print_and_argument_mistakes(world: World, daemon: DaemonProcess) -> None:
    stored = publish_days(world)
    printed = world.cli("replay", "--from", stored[4]["timestamp"], "--print").stdout.splitlines()
    assert [json.loads(line)["id"] for line in printed] == [r["id"] for r in stored[4:]]
    assert json.loads(printed[0])["metadata"]["replay"] is True
    both = world.cli("replay", "--from", "1d", "--webhook", "x", "--to-subscription", "y", check=False)
    assert both.returncode == 1 and "exactly one target" in both.stderr


def test_a_terminal_gets_a_progress_bar(world: World, daemon: DaemonProcess) -> None:
    import os
    import pty
    import subprocess
    import sys

    world.client().publish_batch([{"topic": "load.x", "payload": n} for n in range(1200)])
    primary, secondary = pty.openpty()
    command = [sys.executable, "-m", "elsabro", "replay", "--from", "1h", "--exec", "/bin/true"]
    finished = subprocess.run(
        command, env=world.env, cwd=world.project, stderr=secondary, stdout=subprocess.PIPE
    )
    os.close(secondary)
    shown = os.read(primary, 65536).decode()
    os.close(primary)
    assert finished.returncode == 0 and "replayed 1200 events" in finished.stdout.decode()
    assert "100.0%" in shown and "1200 delivered" in shown and shown.count("\r") >= 2
