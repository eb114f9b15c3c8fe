"""The POSIX forwarder through /bin/sh (dash here): silent, never failing, never losing an event."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from support import HOOK, DaemonProcess, World, payload, run_hook, wait_until


def spooled(world: World) -> list[Path]:
    return sorted((world.project / ".elsabro" / "spool").glob("*.json"))


def test_daemon_up_event_stored_and_nothing_printed(world: World, daemon: DaemonProcess) -> None:
    result = run_hook(world, payload())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    [record] = world.events()
    assert record["topic"] == "tool.bash.completed"
    assert record["payload"] == payload()
    assert not spooled(world)


def test_a_large_payload_goes_through_and_is_cut_to_the_field_limit(
    world: World, daemon: DaemonProcess
) -> None:
    big = {**payload(), "tool_response": {"stdout": "x" * 2_000_000}}
    assert run_hook(world, big).returncode == 0
    [record] = world.events()
    stdout = record["payload"]["tool_response"]["stdout"]
    assert stdout.startswith("x" * 1024 * 1024) and "[TRUNCATED: 2000000 bytes, sha256:" in stdout


def test_with_no_daemon_the_event_is_spooled_owner_only(world: World) -> None:
    result = run_hook(world, payload())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    [path] = spooled(world)
    assert json.loads(path.read_text()) == payload()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    name, pid = path.stem.split("-")
    assert len(name) == 19 and pid.isdigit()


def test_a_stale_socket_still_spools_the_whole_payload(world: World) -> None:
    import socket

    world.settings.socket_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(world.settings.socket_path))  # a socket file nobody listens on: a killed daemon
    stale.close()
    assert run_hook(world, payload()).returncode == 0
    [path] = spooled(world)
    assert json.loads(path.read_text()) == payload()


def test_spooled_events_drain_in_hook_order_exactly_once(world: World) -> None:
    names = ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd"]
    for name in names:
        assert run_hook(world, payload(name)).returncode == 0
    assert len(spooled(world)) == len(names)
    DaemonProcess(world).start()
    world.client().publish({"topic": "live.after"})  # opening the project drains its spool first
    records = world.events()
    assert [(r["metadata"] or {}).get("hookEvent") for r in records] == [*names, None]
    assert records[3]["causationId"] == records[2]["id"]  # links survive the spool
    assert not spooled(world)
    assert all(r["metadata"]["spoolId"] for r in records[:-1])
    # Spooled events keep the time the hook ran, not the time of the drain.
    assert records[0]["timestamp"] < records[-1]["timestamp"]


def test_files_spooled_while_the_daemon_runs_are_picked_up(world: World, daemon: DaemonProcess) -> None:
    world.client().publish({"topic": "open.the.project"})
    # This hook cannot reach the daemon (another socket path), so it spools.
    assert run_hook(world, payload(), ELSABRO_SOCKET=str(world.root / "elsewhere.sock")).returncode == 0
    wait_until(lambda: len(world.events()) == 2, what="the watched spool to drain")
    wait_until(lambda: not spooled(world), what="the drained file to be deleted (after its fsync)")
    assert len(world.events()) == 2


def test_a_drain_cut_short_by_a_crash_is_not_repeated(world: World) -> None:
    assert run_hook(world, payload("PreToolUse")).returncode == 0
    [path] = spooled(world)
    content = path.read_bytes()
    daemon = DaemonProcess(world).start()
    world.client().publish({"topic": "x"})
    daemon.kill()
    path.write_bytes(content)  # as if the daemon died after storing the event, before deleting its file
    DaemonProcess(world).start()
    world.client().publish({"topic": "y"})
    assert [r["topic"] for r in world.events()] == ["tool.bash.started", "x", "y"]
    assert not spooled(world)


def test_the_daemon_is_started_at_most_once_per_ten_seconds(world: World, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    fake = tmp_path / "fake-elsabro"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {starts}\n')
    fake.chmod(0o755)
    for _ in range(5):
        assert run_hook(world, payload(), ELSABRO_BIN=str(fake)).returncode == 0
    wait_until(starts.exists, what="the start attempt")
    lines = starts.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"--project {world.project} daemon run --quiet"
    assert len(spooled(world)) == 5


def test_the_hook_starts_a_real_daemon_that_drains(world: World) -> None:
    import sys

    elsabro = str(Path(sys.executable).parent / "elsabro")
    assert run_hook(world, payload(), ELSABRO_BIN=elsabro).returncode == 0
    wait_until(lambda: len(world.events()) == 1, timeout_s=20, what="the started daemon to drain")
    assert world.events()[0]["metadata"]["spoolId"]


@pytest.mark.parametrize(
    "env",
    [
        {"CLAUDE_PROJECT_DIR": "/proc/not-writable"},
        {"PATH": "/nonexistent"},
        {"HOME": "/nonexistent", "ELSABRO_SOCKET": ""},
    ],
    ids=["unwritable-project", "no-tools-on-path", "no-home"],
)
def test_a_broken_environment_never_breaks_the_session(world: World, env: dict[str, str]) -> None:
    result = run_hook(world, payload(), **env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_empty_input_stores_nothing(world: World, daemon: DaemonProcess) -> None:
    assert run_hook(world, b"").returncode == 0
    assert run_hook(world, b"", ELSABRO_SOCKET=str(world.root / "none.sock")).returncode == 0
    assert world.events() == [] and not spooled(world)


def test_a_payload_that_is_not_json_is_kept_aside_not_lost(world: World, daemon: DaemonProcess) -> None:
    result = run_hook(world, b"{not json")
    assert (result.returncode, result.stdout) == (0, b"")
    [kept] = (world.project / ".elsabro" / "spool" / "rejected").glob("*.json")
    assert kept.read_bytes().startswith(b"{not json")
    assert world.events() == []
    assert world.client().publish({"topic": "still.serving"})["sequence"] == 1


def test_when_the_log_refuses_writes_the_daemon_spools_the_event(world: World) -> None:
    DaemonProcess(world).start()
    for n in range(3):
        world.client().publish({"topic": "ok", "payload": n})
    segment = next((world.project / ".elsabro" / "events").glob("segment-*.jsonl"))
    data = bytearray(segment.read_bytes())
    data[data.index(b'"sequence":2') - 30] ^= 1  # damage in the middle: the log refuses writes
    segment.write_bytes(bytes(data))
    world.daemons[-1].terminate()
    DaemonProcess(world).start()
    assert run_hook(world, payload()).returncode == 0
    [path] = spooled(world)
    assert json.loads(path.read_text()) == payload()
    assert segment.read_bytes() == bytes(data)


def test_the_hook_is_plain_posix_sh() -> None:
    text = HOOK.read_text()
    for bashism in ("[[", "function ", "$RANDOM", "$EPOCHREALTIME", "<<<", "local ", "source "):
        assert bashism not in text, bashism
    assert subprocess.run(["dash", "-n", str(HOOK)], capture_output=True).returncode == 0
    assert os.access(HOOK, os.X_OK)


def test_a_hung_daemon_does_not_hold_the_session(world: World, daemon: DaemonProcess) -> None:
    """SessionEnd gets 1.5 s in all: the send has a hard limit well under it."""
    import signal

    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        data = json.dumps(payload("SessionEnd")).encode()
        env = {**world.env, "CLAUDE_PROJECT_DIR": str(world.project)}
        result = subprocess.run(["/bin/sh", str(HOOK)], input=data, env=env, capture_output=True, timeout=1.5)
        assert (result.returncode, result.stdout) == (0, b"")
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    # The request reached the socket before the limit: the resumed daemon stores it.
    wait_until(lambda: [r["topic"] for r in world.events()] == ["session.ended"], what="the event")


def test_a_session_start_spooled_just_after_its_sessions_first_event_is_stored_first(world: World) -> None:
    # Claude Code runs InstructionsLoaded and SessionStart in parallel: either may be spooled first.
    spool = world.project / ".elsabro" / "spool"
    spool.mkdir(parents=True)
    start_ns = time.time_ns()
    other = {**payload("UserPromptSubmit"), "session_id": "another-session"}
    for offset_ms, body in ((0, payload("InstructionsLoaded")), (1, other), (2, payload("SessionStart"))):
        (spool / f"{start_ns + offset_ms * 1_000_000}-1.json").write_text(json.dumps(body))
    late = {**payload("UserPromptSubmit")}
    (spool / f"{start_ns + 5_000_000_000}-1.json").write_text(json.dumps(late))  # 5 s later: stays
    DaemonProcess(world).start()
    world.client().publish({"topic": "live.after"})
    hooks = [((r["metadata"] or {}).get("hookEvent"), r["correlationId"]) for r in world.events()]
    session = payload()["session_id"]
    assert hooks == [
        ("SessionStart", session),
        ("InstructionsLoaded", session),
        ("UserPromptSubmit", "another-session"),
        ("UserPromptSubmit", session),
        (None, None),
    ]
