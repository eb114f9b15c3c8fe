"""A project directory removed and made again while the daemon serves it.

`rm -rf repo && git clone ... repo` (or a restore from a backup, or `rm -rf .elsabro`)
puts a new directory at the same path. Whatever the daemon had open of the old one is
closed; later publishes and hook events go to the new directory's log, never into
files that no longer have a name, and survive a restart.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable

import pytest

from support import DaemonProcess, World, configure, payload, run_hook, wait_until


def _empty(world: World) -> None:
    shutil.rmtree(world.project)
    world.project.mkdir()


def _copy(world: World) -> None:
    backup = world.root / "backup"
    shutil.copytree(world.project, backup, symlinks=True)  # the log included, as a backup has it
    shutil.rmtree(world.project)
    shutil.copytree(backup, world.project, symlinks=True)


def _moved_aside(world: World) -> None:
    # The old directory still exists elsewhere, files and all: the daemon must not follow it.
    copy = world.root / "copy"
    shutil.copytree(world.project, copy, symlinks=True)
    os.rename(world.project, world.root / "old")
    os.rename(copy, world.project)


def _log_removed(world: World) -> None:
    shutil.rmtree(world.project / ".elsabro")


REPLACEMENTS: dict[str, tuple[Callable[[World], None], bool]] = {
    # how the directory is replaced, and whether the events from before are in the new one
    "made-empty": (_empty, False),
    "restored-from-a-copy": (_copy, True),
    "copy-moved-in": (_moved_aside, True),
    "elsabro-removed": (_log_removed, False),
}


@pytest.mark.parametrize("how", sorted(REPLACEMENTS))
def test_events_after_a_replacement_land_in_the_new_directory(world: World, how: str) -> None:
    replace, kept = REPLACEMENTS[how]
    daemon = DaemonProcess(world).start()
    world.client().publish({"topic": "before.replacement"})

    replace(world)
    world.client().publish({"topic": "after.publish"})
    world.client().publish_batch([{"topic": "after.batch"}, {"topic": "after.batch"}])
    hook = run_hook(world, payload("PostToolUse"))
    assert hook.returncode == 0 and hook.stdout == b""

    daemon.terminate()
    DaemonProcess(world).start()
    topics = [record["topic"] for record in world.events()]
    before = ["before.replacement"] if kept else []
    assert topics[: len(before) + 3] == [*before, "after.publish", "after.batch", "after.batch"]
    assert len(topics) > len(before) + 3, "the hook's events are missing from the new directory"
    assert not list((world.project / ".elsabro" / "spool").glob("*.json")), "hook events left spooled"
    assert [r["sequence"] for r in world.events()] == list(range(1, len(topics) + 1))
    assert "intact" in world.cli("verify").stdout


def test_the_old_directorys_consumers_stop(world: World) -> None:
    """An append subscription of the old directory stops writing there once it is replaced."""
    out = world.project / "handled.jsonl"  # an append path stays inside its project
    handler = {"type": "append", "path": "handled.jsonl"}
    configure(world, {"subscriptions": [{"name": "copy", "pattern": "#", "handler": handler}]})
    DaemonProcess(world).start()
    world.client().publish({"topic": "one"})
    wait_until(lambda: out.exists() and out.read_text().count("\n") == 1, what="the subscription to run")

    _moved_aside(world)
    (world.project / ".elsabro" / "config.json").unlink()  # the new directory subscribes to nothing
    out.unlink()  # the copy's; the old directory's own stays in old/
    world.client().publish({"topic": "two"})
    world.client().publish({"topic": "three"})
    assert [r["topic"] for r in world.events()] == ["one", "two", "three"]
    old_log = sorted((world.root / "old" / ".elsabro" / "events").glob("segment-*.jsonl"))
    assert sum(len(p.read_bytes().splitlines()) for p in old_log) == 1
    assert not out.exists(), "the old directory's subscription still ran"
    assert (world.root / "old" / "handled.jsonl").read_text().count("\n") == 1


def test_a_follower_of_the_old_directory_is_ended(world: World) -> None:
    """`tail -f` on a replaced directory ends instead of waiting forever on files no one writes."""
    DaemonProcess(world).start()
    world.client().publish({"topic": "one"})
    lines = world.client().stream("/v1/events", {"follow": "1"}, timeout_s=15)
    assert b'"one"' in next(lines)
    _empty(world)
    world.client().publish({"topic": "two"})  # goes to the new directory, and closes the old one
    assert list(lines) == []  # the stream ended (a TimeoutError if it hung)


def test_concurrent_publishers_across_replacements_lose_nothing_acknowledged(world: World) -> None:
    DaemonProcess(world).start()
    acknowledged: list[tuple[int, str]] = []  # (replacements done when it was answered, id)
    errors: list[str] = []
    replacements = 0
    stop = threading.Event()

    def publisher(number: int) -> None:
        client = world.client()
        while not stop.is_set():
            done = replacements
            try:
                acknowledged.append((done, client.publish({"topic": f"load.{number}"})["id"]))
            except Exception as exc:  # reported below: no publish may fail
                errors.append(repr(exc))

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            target = len(acknowledged) + 50
            wait_until(lambda target=target: len(acknowledged) > target, what="publishes to go on")
            _empty(world)
            replacements += 1
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) > count + 100, what="publishes after the last replacement")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    stored = {record["id"] for record in world.events()}
    # Started after the last replacement, so answered from the new directory: every one is there.
    after = [event_id for done, event_id in acknowledged if done == 3]
    assert after and all(event_id in stored for event_id in after)
    assert "intact" in world.cli("verify").stdout
