"""The embedded EventBus on a project directory: a file log that outlives the process,
and one writer per log, whether that is the daemon or an embedded bus."""

from __future__ import annotations

import json
from typing import Any

import pytest

from elsabro import EventBus, LogInUse, StoredEvent
from elsabro.store.audit import verify_project
from support import DaemonProcess, World, configure, run, until, wait_until


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_an_embedded_log_and_its_durable_cursors_outlive_the_bus(world: World, store: Any) -> None:
    got: list[Any] = []

    async def handle(event: StoredEvent) -> None:
        got.append(event.payload)

    async def first() -> None:
        async with EventBus.embedded(store, world.project) as bus:
            await bus.subscribe("job.run", handle, name="indexer", durable=True)
            await bus.publish_batch([{"topic": "job.run", "payload": n} for n in range(3)])
            await until(lambda: got == [0, 1, 2], "the first three")

    async def second() -> None:
        async with EventBus.embedded(store, world.project) as bus:
            await bus.publish("job.run", 3)  # before the subscriber is back
            await bus.subscribe("job.run", handle, name="indexer", durable=True)
            await bus.publish("job.run", 4)
            await until(lambda: got == [0, 1, 2, 3, 4], "the resumed subscriber")
            assert [e.sequence for e in await bus.history(topic="job.run")] == [1, 2, 3, 4, 5]

    run(first())
    run(second())
    if store == "file":  # the daemon's own check: one chain across both buses
        assert verify_project(world.project, world.settings).intact


def test_the_project_config_applies_to_an_embedded_bus(world: World) -> None:
    subscription = {"name": "audit", "topic": "job.run", "handler": {"type": "append", "path": "audit.jsonl"}}
    configure(world, {"subscriptions": [subscription]})

    async def scenario() -> None:
        async with EventBus.embedded("file", world.project, settings=world.settings) as bus:
            stored = await bus.publish("job.run", {"token": "ghp_" + "a" * 36})
            assert stored.payload["token"].startswith("[REDACTED")
            audit = world.project / "audit.jsonl"
            await until(audit.exists, "the config's subscription to append")

    run(scenario())


def test_an_untrusted_project_config_runs_no_handler_in_an_embedded_bus(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    subscription = {"name": "audit", "topic": "job.run", "handler": {"type": "append", "path": "audit.jsonl"}}
    configure(world, {"subscriptions": [subscription]}, trusted=False)

    async def scenario() -> None:
        async with EventBus.embedded("file", world.project, settings=world.settings) as bus:
            await bus.publish("job.run", {"n": 1})
            assert bus._backend.project.dispatcher.consumers == {}  # type: ignore[attr-defined]

    with caplog.at_level("WARNING", logger="elsabro.bus"):
        run(scenario())
    assert f"config of {world.project} is not trusted: run `elsabro trust`" in caplog.text
    assert not (world.project / "audit.jsonl").exists()


def test_one_writer_per_log(world: World, daemon: DaemonProcess) -> None:
    client = world.client()
    client.publish({"topic": "a.b"})  # the daemon now serves the project

    async def embedded_while_the_daemon_serves() -> None:
        with pytest.raises(LogInUse, match="another process writes the log"):
            async with EventBus.embedded("file", world.project):
                pass

    run(embedded_while_the_daemon_serves())

    other = world.root / "other"
    other.mkdir()
    hook = json.dumps({"hook_event_name": "SessionStart", "session_id": "s1", "cwd": str(other)})

    async def daemon_while_embedded_holds() -> None:
        async with EventBus.embedded("file", other) as bus:
            await bus.publish("mine.first")
            with pytest.raises(LogInUse):
                world.client(other).publish({"topic": "a.b"})
            # The hook's event is not lost: it waits in the project's spool.
            reply = world.client(other).call("POST", "/v1/hook", json.loads(hook))
            assert b"spooled" in reply

    run(daemon_while_embedded_holds())
    world.client(other).publish({"topic": "after.close"})  # opens it: the spool drains first
    topics = wait_until(
        lambda: [r["topic"] for r in map(json.loads, world.client(other).events({}))] or None,
        what="the other project's events",
    )
    assert topics[0] == "mine.first" and "session.started" in topics and topics[-1] == "after.close"
