"""An `append` handler writes only inside its project, and an `exec` handler runs only there."""

from __future__ import annotations

import os
from typing import Any

import pytest

from support import DaemonProcess, World, configure, wait_until


def sub(name: str, handler: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "topic": "a.b", "options": {"maxRetries": 0}, "handler": handler}


@pytest.mark.parametrize(
    ("handler", "where"),
    [
        ({"type": "append", "path": "../home/.bashrc"}, "subscriptions[0].handler.path"),
        ({"type": "append", "path": "logs/../../x.jsonl"}, "subscriptions[0].handler.path"),
        ({"type": "append", "path": "/tmp/x.jsonl"}, "subscriptions[0].handler.path"),
        ({"type": "append", "path": "~/x.jsonl"}, "subscriptions[0].handler.path"),
        ({"type": "exec", "argv": ["true"], "cwd": ".."}, "subscriptions[0].handler.cwd"),
        ({"type": "exec", "argv": ["true"], "cwd": "/etc"}, "subscriptions[0].handler.cwd"),
    ],
)
def test_a_path_out_of_the_project_is_refused_when_the_config_is_read(
    world: World, handler: dict[str, Any], where: str
) -> None:
    configure(world, {"subscriptions": [sub("out", handler)]})
    checked = world.cli("config", "check", check=False)
    assert checked.returncode == 1
    value = handler.get("path", handler.get("cwd"))
    assert checked.stderr.splitlines() == [
        f"elsabro: {where}: must be a path inside the project (relative, without ..), not {value!r}"
    ]


def test_a_symlink_out_of_the_project_is_refused_when_the_handler_runs(world: World) -> None:
    outside = world.root / "outside"
    outside.mkdir()
    target = outside / "target"
    target.write_text("untouched\n")
    configure(
        world,
        {
            "subscriptions": [
                sub("via-dir", {"type": "append", "path": "linked/x.jsonl"}),
                sub("via-file", {"type": "append", "path": "final.jsonl"}),
                sub("via-cwd", {"type": "exec", "argv": ["sh", "-c", "touch here"], "cwd": "linked"}),
                sub("inside", {"type": "append", "path": "logs/ok.jsonl"}),
            ]
        },
    )
    DaemonProcess(world).start()
    # Planted after the config was read: only the run-time check can see them.
    os.symlink(outside, world.project / "linked")
    os.symlink(target, world.project / "final.jsonl")
    world.client().publish({"topic": "a.b"})

    def errors() -> dict[str, str] | None:
        rows = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
        done = {r["name"]: r["lastError"] for r in rows if r["lag"] == 0}
        return done if len(done) == 4 else None

    last = wait_until(errors, what="every subscription to handle the event")
    assert "'linked/x.jsonl' leads outside the project" in last["via-dir"]
    assert "'final.jsonl' is a symbolic link: refused" in last["via-file"]
    assert "exec cwd 'linked' leads outside the project" in last["via-cwd"]
    assert last["inside"] is None and (world.project / "logs" / "ok.jsonl").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert target.read_text() == "untouched\n"


def test_paths_inside_the_project_still_work(world: World) -> None:
    (world.project / "work").mkdir()
    configure(
        world,
        {
            "subscriptions": [
                sub("deep", {"type": "append", "path": "a/b/./c.jsonl"}),
                sub("in-work", {"type": "exec", "argv": ["sh", "-c", "touch ran"], "cwd": "work"}),
            ]
        },
    )
    DaemonProcess(world).start()
    world.client().publish({"topic": "a.b"})
    wait_until((world.project / "a" / "b" / "c.jsonl").exists, what="the append")
    wait_until((world.project / "work" / "ran").exists, what="the exec in its cwd")


def test_a_store_path_out_of_the_project_is_refused_and_nothing_is_written_there(world: World) -> None:
    configure(world, {"events": {"store": {"path": "../elsewhere"}}})
    checked = world.cli("config", "check", check=False)
    assert "events.store.path: must be a path inside the project" in checked.stderr
    DaemonProcess(world).start()
    # The config names no store that can be opened: the project refuses writes and says why
    # (a hook's event waits in the spool meanwhile), rather than writing anywhere else.
    published = world.cli("publish", "a.b", check=False)
    assert published.returncode == 1
    assert "events.store.path: must be a path inside the project" in published.stderr
    assert not (world.root / "elsewhere").exists()
    configure(world, {})
    world.client().publish({"topic": "a.b"})
    assert [r["topic"] for r in world.events()] == ["a.b"]  # in .elsabro/events, once fixed
