"""History formats and causation chains, export, views, backends and retention through a real daemon."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from typing import Any

import pytest

from elsabro.core.errors import DiskFull
from support import FIXTURES, DaemonProcess, World, configure, payload, run_hook, wait_until


def chain_of_events(world: World) -> dict[str, dict[str, Any]]:
    """a -> b -> c and d -> e (causation links), in one session."""
    client = world.client()
    made: dict[str, dict[str, Any]] = {}
    for name, cause in (("a", None), ("d", None), ("b", "a"), ("x", None), ("e", "d"), ("c", "b")):
        event = {"topic": f"demo.{name}", "payload": {"name": name}, "correlationId": "s-1"}
        if cause:
            event["causationId"] = made[cause]["id"]
        made[name] = client.publish(event)
    return made


def test_history_caused_by_follows_the_links_transitively(world: World, daemon: DaemonProcess) -> None:
    made = chain_of_events(world)
    out = world.cli("history", "--caused-by", made["a"]["id"], "--format", "jsonl").stdout
    assert [json.loads(line)["topic"] for line in out.splitlines()] == ["demo.a", "demo.b", "demo.c"]
    topics = world.cli("history", "--caused-by", made["a"]["id"], "--topic", "demo.c", "--json").stdout
    assert [json.loads(line)["topic"] for line in topics.splitlines()] == ["demo.c"]  # links through b
    assert world.cli("history", "--caused-by", "evt_nothing", "--json").stdout == ""


def test_history_formats_say_the_same_thing(world: World, daemon: DaemonProcess) -> None:
    made = chain_of_events(world)
    jsonl = [json.loads(line) for line in world.cli("history", "--format", "jsonl").stdout.splitlines()]
    assert [r["id"] for r in jsonl] == [m["id"] for m in made.values()]
    assert json.loads(world.cli("history", "--format", "json").stdout) == jsonl
    rows = list(csv.DictReader(io.StringIO(world.cli("history", "--format", "csv").stdout)))
    assert [row["id"] for row in rows] == [r["id"] for r in jsonl]
    assert json.loads(rows[2]["payload"]) == {"name": "b"} and rows[2]["causationId"] == made["a"]["id"]
    table = world.cli("history", "--format", "table", "--limit", "2").stdout.splitlines()
    assert len(table) == 2 and "demo.e" in table[0] and "demo.c" in table[1]
    assert world.cli("history", "--format", "json", "--topic", "none.such").stdout.strip() == "[]"


def test_export_cloudevents_is_read_by_the_official_sdk(world: World, daemon: DaemonProcess) -> None:
    from cloudevents.core.formats.json import JSONFormat

    made = chain_of_events(world)
    target = world.root / "export.json"
    world.cli("export", "--format", "cloudevents", "--correlation", "s-1", "-o", str(target))
    batch = json.loads(target.read_text())
    assert isinstance(batch, list) and len(batch) == len(made)
    events = [JSONFormat().read(None, json.dumps(item)) for item in batch]
    assert [e.get_id() for e in events] == [m["id"] for m in made.values()]
    assert events[2].get_type() == "demo.b" and events[2].get_extension("causationid") == made["a"]["id"]
    assert events[0].get_data() == {"name": "a"}
    jsonl = world.cli("export", "--topic", "demo.a").stdout.splitlines()
    assert [json.loads(line)["id"] for line in jsonl] == [made["a"]["id"]]


def test_views_answer_from_the_log_and_a_deleted_snapshot_changes_nothing(
    world: World, daemon: DaemonProcess
) -> None:
    configure(world, {"events": {"store": {"snapshots": {"enabled": True, "frequency": 5}}}})
    recorded = (FIXTURES / "session-2.1.197.jsonl").read_text().splitlines()
    session = next(json.loads(line)["correlationId"] for line in recorded)
    for line in recorded:  # the recorded real session, replayed as hook payloads through the daemon
        record = json.loads(line)
        if "hook_event_name" in (record["payload"] or {}):  # not the derived events
            world.client().call("POST", "/v1/hook", record["payload"])
    client = world.client()
    sessions = client.call_json("GET", "/v1/views/sessions")["rows"]
    assert [row["sessionId"] for row in sessions] == [session]
    assert sessions[0]["toolCalls"]["Bash"] == 5 and sessions[0]["failures"] == 1
    snapshot = world.project / ".elsabro" / "views" / "sessions.json"
    assert snapshot.exists()
    for name in ("sessions", "tasks", "agents", "stats"):
        before = client.call_json("GET", f"/v1/views/{name}")["rows"]
        (world.project / ".elsabro" / "views" / f"{name}.json").unlink(missing_ok=True)
        assert client.call_json("GET", f"/v1/views/{name}")["rows"] == before
    timeline = world.cli("session", session, "--json").stdout
    assert any(entry.get("kind") == "agent" and entry["children"] for entry in json.loads(timeline))
    assert "no events of session" in world.cli("session", "nope", check=False).stderr


def test_the_sqlite_backend_serves_the_same_commands(world: World) -> None:
    configure(world, {"events": {"store": {"backend": "sqlite"}}})
    DaemonProcess(world).start()
    made = chain_of_events(world)
    assert (world.project / ".elsabro" / "events" / "events.db").exists()
    assert not list((world.project / ".elsabro" / "events").glob("segment-*"))
    out = world.cli("history", "--correlation", "s-1", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in out] == [m["id"] for m in made.values()]
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True
    world.daemons[-1].terminate()
    DaemonProcess(world).start()  # reopened: the chain goes on
    world.client().publish({"topic": "after.restart"})
    assert json.loads(world.cli("verify", "--json").stdout) == {
        "intact": True,
        "records": 7,
        "segments": 0,
        "firstBadSequence": None,
        "problem": None,
    }


def test_cleanup_keeps_what_a_lagging_durable_subscription_has_not_handled(world: World) -> None:
    gate = world.root / "gate"
    handler = ["/bin/sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.05; done; cat >/dev/null']
    subscription = {
        "name": "slow",
        "pattern": "load.#",
        "options": {"durable": True, "timeout": 60_000},
        "handler": {"type": "exec", "argv": handler},
    }
    retention = {"maxEvents": 50, "archive": True}
    configure(world, {"events": {"store": {"retention": retention}}, "subscriptions": [subscription]})
    world.env["ELSABRO_SEGMENT_MAX_BYTES"] = "4096"
    world.settings = world.settings.__class__.from_env(world.env)
    DaemonProcess(world).start()
    client = world.client()
    for n in range(40):
        client.publish_batch([{"topic": "load.x", "payload": {"n": n, "i": i}} for i in range(5)])
    first = client.call_json("POST", "/v1/cleanup", {})["removed"]
    assert first is None or first["lastSequence"] < 1  # the handler holds event 1: nothing may go
    gate.touch()  # the subscription catches up...
    wait_until(
        lambda: client.call_json("GET", "/v1/subscriptions")["subscriptions"][0]["lag"] == 0,
        timeout_s=60,
        what="the subscription to catch up",
    )

    def first_left() -> int:
        return int(
            json.loads(world.cli("history", "--json", "--limit", "100000").stdout.splitlines()[0])["sequence"]
        )

    # Cleanup goes as far as the subscription's checkpointed cursor allows, then to maxEvents.
    wait_until(
        lambda: client.call_json("POST", "/v1/cleanup", {})["removed"] is None and first_left() > 100,
        what="cleanup down to maxEvents",
    )
    removals = (world.project / ".elsabro" / "events" / "removed.jsonl").read_text().splitlines()
    last_removed = json.loads(removals[-1])["lastSequence"]
    assert first_left() == last_removed + 1 and last_removed <= 150  # the newest 50 all stay
    assert json.loads(removals[-1])["archive"] is not None
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True
    assert "nothing to remove" in world.cli("cleanup").stdout


@pytest.fixture
def full_disk_world(world: World) -> Any:
    """The project's log on a 1 MiB tmpfs of its own, so the disk can really fill up."""
    events = world.project / ".elsabro" / "events"
    events.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(events)])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root; tests/test_store.py injects ENOSPC instead")
    try:
        yield world
    finally:
        for daemon in world.daemons:
            daemon.close()
        subprocess.run(["umount", "-l", str(events)], check=False)


def test_a_full_disk_refuses_publishes_spools_hooks_and_resumes(full_disk_world: World) -> None:
    world = full_disk_world
    world.env["ELSABRO_MAINTENANCE_INTERVAL_S"] = "0.2"
    DaemonProcess(world).start()
    client = world.client()
    acknowledged = [client.publish({"topic": "before.full", "payload": n})["id"] for n in range(3)]
    filler = world.project / ".elsabro" / "events" / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(10_000):  # 1 MiB fills long before this bound
            os.write(fd, b"x" * 4096)
    os.close(fd)
    for _ in range(100):  # the segment's last page may still have room for a few small events
        try:
            acknowledged.append(client.publish({"topic": "before.full", "payload": {"pad": "z" * 500}})["id"])
        except DiskFull:
            break
    else:
        raise AssertionError("the disk never filled up")
    refused = world.cli("publish", "during.full", "--data", json.dumps({"pad": "z" * 5000}), check=False)
    assert refused.returncode == 1 and "no space left" in refused.stderr
    assert run_hook(world, payload()).returncode == 0  # the hook's event is spooled, not lost
    spool = world.project / ".elsabro" / "spool"
    assert len(list(spool.glob("*.json"))) == 1
    filler.unlink()  # space is back
    wait_until(lambda: not list(spool.glob("*.json")), what="the spool to drain")
    topics = [r["topic"] for r in world.events()]
    assert topics == ["before.full"] * len(acknowledged) + ["tool.bash.completed"]
    assert [r["id"] for r in world.events()[:-1]] == acknowledged  # every acknowledged event, intact
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True
    client.publish({"topic": "after.full"})
    assert [r["sequence"] for r in world.events()] == list(range(1, len(acknowledged) + 3))
