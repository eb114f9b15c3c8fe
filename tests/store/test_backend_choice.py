"""An `events.store.backend` the daemon does not know is an error, never a silent file store.

It used to fall back to the file store: events went to `.elsabro/events` while the config
named another backend, with nothing said.
"""

from __future__ import annotations

import json

from support import DaemonProcess, World, configure, payload, run_hook, wait_until


def test_an_unknown_backend_refuses_the_project_and_loses_no_hook_event(world: World) -> None:
    configure(world, {"events": {"store": {"backend": "postgres"}}})
    DaemonProcess(world).start()

    refused = world.cli("publish", "a.b", check=False)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert "events.store.backend" in line and "cannot open" in line and "config check" in line, line
    for command in (("history",), ("subscriptions", "list")):
        result = world.cli(*command, check=False)
        assert result.returncode == 1 and "events.store.backend" in result.stderr

    # A hook meanwhile: it exits 0 and its event waits in the spool.
    hook = {**payload("UserPromptSubmit"), "session_id": "s-store", "cwd": str(world.project)}
    assert run_hook(world, hook).returncode == 0
    assert not (world.project / ".elsabro" / "events").exists()
    assert list((world.project / ".elsabro" / "spool").glob("*.json"))

    configure(world, {"events": {"store": {"backend": "file"}}})
    world.cli("publish", "a.b")

    def stored_topics() -> list[str]:
        return [json.loads(line)["topic"] for line in world.cli("history", "--json").stdout.splitlines()]

    topics = wait_until(
        lambda: (found := stored_topics()) and "a.b" in found and len(found) >= 2 and found,
        what="the spooled hook event and the publish",
    )
    assert topics[-1] == "a.b" and any(t != "a.b" for t in topics), topics


def test_the_rest_of_the_config_being_invalid_does_not_change_the_backend(world: World) -> None:
    broken = {"name": "x", "topic": "a.b", "handler": {"type": "nope"}}
    configure(world, {"events": {"store": {"backend": "sqlite"}}, "subscriptions": [broken]})
    DaemonProcess(world).start()
    world.cli("publish", "a.b")
    assert (world.project / ".elsabro" / "events" / "events.db").exists()
    assert not list((world.project / ".elsabro" / "events").glob("segment-*.jsonl"))
