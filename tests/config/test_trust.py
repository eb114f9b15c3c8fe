"""Trust: a cloned repository's config runs nothing until its user trusts that exact content."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from support import DaemonProcess, World, configure, payload, run_hook, wait_until

UNTRUSTED = "is not trusted: run `elsabro trust` in it to run its handlers"


def git(*args: str, cwd: Path) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def crafted_repository(world: World, marker: Path, outside: Path) -> dict[str, Any]:
    """A repository whose committed config runs a command and appends through a committed
    symlink that points out of the project; cloned into the world's project directory."""
    origin = world.root / "origin"
    (origin / ".elsabro").mkdir(parents=True)
    config = {
        "subscriptions": [
            {
                "name": "runs",
                "pattern": "#",
                "handler": {"type": "exec", "argv": ["sh", "-c", f"echo ran >> {marker}"]},
            },
            {
                "name": "writes",
                "pattern": "#",
                "options": {"maxRetries": 0},
                "handler": {"type": "append", "path": "out/escape.jsonl"},
            },
        ]
    }
    (origin / ".elsabro" / "config.json").write_text(json.dumps(config))
    os.symlink(outside, origin / "out")
    git("init", "-q", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "a crafted config", cwd=origin)
    shutil.rmtree(world.project)
    git("clone", "-q", str(origin), str(world.project), cwd=world.root)
    return config


def rows(world: World) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
    return answer


def hook_event(world: World, session: str) -> None:
    assert run_hook(world, {**payload("SessionStart"), "session_id": session}).returncode == 0
    wait_until(
        lambda: any(r.get("correlationId") == session for r in world.events()), what=f"event {session}"
    )


def test_a_cloned_config_runs_nothing_until_trusted_and_again_after_a_foreign_edit(world: World) -> None:
    marker, outside = world.root / "marker", world.root / "outside"
    outside.mkdir()
    config = crafted_repository(world, marker, outside)
    DaemonProcess(world).start()

    # A hook event and a read-only command in the clone: recorded, and nothing runs.
    hook_event(world, "s1")
    assert world.cli("history").returncode == 0
    assert rows(world) == []  # no consumer for the config's subscriptions
    listed = world.cli("subscriptions", "list")
    assert f"config of {world.project} {UNTRUSTED}" in listed.stderr
    doctor = world.cli("doctor", check=False)
    assert f"FIX  config       config of {world.project} {UNTRUSTED}" in doctor.stdout
    log_file = world.settings.log_dir / "daemon.log"
    wait_until(lambda: UNTRUSTED in log_file.read_text(), what="the daemon's log to say so")
    assert not marker.exists() and list(outside.iterdir()) == []

    # Trusted: the exec handler runs; the append through the symlink is still refused.
    assert "trusted: " in world.cli("trust").stdout
    wait_until(lambda: len(rows(world)) == 2, what="the trusted subscriptions to start")
    hook_event(world, "s2")
    wait_until(lambda: marker.exists() and "ran\n" in marker.read_text(), what="the exec handler")
    writes = wait_until(
        lambda: next((r for r in rows(world) if r["name"] == "writes" and r["lastError"]), None)
    )
    assert "leads outside the project" in writes["lastError"]
    assert list(outside.iterdir()) == []
    assert "FIX  config" not in world.cli("doctor", check=False).stdout

    # Another program edits the file: its handlers stop until trusted again.
    config["subscriptions"][0]["handler"]["argv"][2] = f"echo edited >> {marker}"
    (world.project / ".elsabro" / "config.json").write_text(json.dumps(config))
    wait_until(lambda: rows(world) == [], what="the handlers to stop")
    before = marker.read_text()
    hook_event(world, "s3")
    assert UNTRUSTED in world.cli("subscriptions", "list").stderr
    assert marker.read_text() == before and "edited" not in before
    world.cli("trust")
    wait_until(lambda: len(rows(world)) == 2, what="the trusted subscriptions to start again")
    hook_event(world, "s4")
    wait_until(lambda: "edited\n" in marker.read_text(), what="the edited handler")

    # The record is the user's alone; --revoke stops the handlers again.
    trusted_file = world.settings.state_dir / "trusted.json"
    assert stat.S_IMODE(trusted_file.stat().st_mode) == 0o600
    assert str(world.project) in json.loads(trusted_file.read_text())
    assert "no longer trusted" in world.cli("trust", "--revoke").stdout
    wait_until(lambda: rows(world) == [], what="the handlers to stop after --revoke")


def test_a_config_without_handlers_needs_no_trust_and_its_redaction_applies(world: World) -> None:
    redaction = {"patterns": [{"name": "word", "regex": "hunter2-[0-9]+"}]}
    configure(world, {"redaction": redaction}, trusted=False)
    DaemonProcess(world).start()
    world.client().publish({"topic": "a.b", "payload": {"said": "hunter2-42"}})
    assert world.events()[-1]["payload"]["said"] == "[REDACTED:word]"
    assert "needs no trust" in world.cli("trust", "--show").stdout
    assert "FIX  config" not in world.cli("doctor", check=False).stdout


def test_an_untrusted_config_keeps_its_redaction_but_not_its_retention(world: World) -> None:
    config = {
        "redaction": {"patterns": [{"name": "word", "regex": "hunter2-[0-9]+"}]},
        "events": {"store": {"retention": {"maxEvents": 50}}},
    }
    configure(world, config, trusted=False)
    world.env["ELSABRO_SEGMENT_MAX_BYTES"] = "4096"  # many segments: retention removes whole ones
    DaemonProcess(world).start()
    for n in range(20):
        world.client().publish_batch([{"topic": "a.b", "payload": {"said": "hunter2-42", "n": n}}] * 10)
    refused = world.cli("cleanup", check=False)
    assert refused.returncode == 1 and UNTRUSTED in refused.stderr
    assert len(world.events()) == 200
    assert {r["payload"]["said"] for r in world.events()} == {"[REDACTED:word]"}
    world.cli("trust")
    wait_until(lambda: world.cli("cleanup", check=False).returncode == 0, what="the policy once trusted")
    assert 50 <= len(world.events()) < 200


def test_a_user_config_subscription_cannot_be_replaced_by_an_untrusted_project(world: World) -> None:
    mine = world.project / "mine.jsonl"
    user = {
        "subscriptions": [
            {"name": "audit", "pattern": "#", "handler": {"type": "append", "path": "mine.jsonl"}}
        ]
    }
    world.settings.user_config_file.parent.mkdir(parents=True)
    world.settings.user_config_file.write_text(json.dumps(user))
    theirs = {
        "subscriptions": [{"name": "audit", "pattern": "#", "handler": {"type": "exec", "argv": ["false"]}}]
    }
    configure(world, theirs, trusted=False)
    DaemonProcess(world).start()
    wait_until(lambda: len(rows(world)) == 1, what="the user's subscription")
    world.client().publish({"topic": "a.b"})
    wait_until(mine.exists, what="the user's own handler")
    assert rows(world)[0]["lastError"] is None


def test_a_cli_edit_keeps_a_trusted_config_trusted_and_an_untrusted_one_untrusted(world: World) -> None:
    exec_sub = {"name": "x", "topic": "a.b", "handler": {"type": "exec", "argv": ["true"]}}
    configure(world, {"subscriptions": [exec_sub]})
    world.cli("webhooks", "add", "one", "--url", "http://127.0.0.1:9/")
    assert "trusted: " in world.cli("trust", "--show").stdout
    configure(world, {"subscriptions": [exec_sub]}, trusted=False)
    edited = world.cli("webhooks", "add", "two", "--url", "http://127.0.0.1:9/")
    assert UNTRUSTED in edited.stderr
    assert world.cli("trust", "--show", check=False).returncode == 1


def test_a_config_another_user_owns_or_may_write_is_never_trusted(world: World) -> None:
    configure(
        world,
        {"subscriptions": [{"name": "x", "topic": "a.b", "handler": {"type": "exec", "argv": ["true"]}}]},
    )
    path = world.project / ".elsabro" / "config.json"
    os.chmod(path, 0o666)
    assert (
        "trusted" in world.cli("trust").stdout
    )  # the user's own file: trust takes group and others' write off
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o664)
    assert "writable by group or others" in world.cli("trust", "--show", check=False).stdout
    os.chown(path, 65534, 65534)
    refused = world.cli("trust", check=False)
    assert refused.returncode == 1
    assert "cannot trust the config" in refused.stderr and "owned by uid 65534" in refused.stderr
    doctor = world.cli("doctor", check=False).stdout
    assert "owned by uid 65534, not by you; its handlers do not run" in doctor


def test_a_durable_subscription_paused_by_a_foreign_edit_resumes_where_it_stopped(world: World) -> None:
    """Untrusted again, the config's handlers stop; trusted again, a durable one catches up on
    what was published meanwhile (its cursor is kept, not dropped like a removed one's)."""
    out = world.project / "seen.jsonl"
    config = {
        "subscriptions": [
            {
                "name": "audit",
                "pattern": "demo.#",
                "options": {"durable": True},
                "handler": {"type": "append", "path": "seen.jsonl"},
            }
        ]
    }
    configure(world, config)
    DaemonProcess(world).start()

    def seen() -> list[int]:
        lines = out.read_text().splitlines() if out.exists() else []
        return [json.loads(line)["payload"]["n"] for line in lines]

    world.cli("publish", "demo.x", "--data", '{"n": 1}')
    wait_until(lambda: seen() == [1], what="the first event handled")
    # Another program edits the file: the handlers stop until the user trusts it again.
    (world.project / ".elsabro" / "config.json").write_text(json.dumps(config, indent=2))
    wait_until(lambda: rows(world) == [], what="the subscription paused")
    for n in (2, 3):
        world.cli("publish", "demo.x", "--data", json.dumps({"n": n}))
    world.cli("trust")
    wait_until(lambda: seen() == [1, 2, 3], what="the events published while it was paused")
