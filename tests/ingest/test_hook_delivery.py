"""The hook keeps its payload until the daemon says it is stored, and each delivery is stored once.

A hung daemon, a daemon killed mid-request and a disk too full for the daemon to store or
spool anything: the hook's own copy becomes a spool file. A delivery that reaches the log
both ways (the daemon stored it after the hook gave up and spooled it) is stored once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elsabro.ingest.spool import Deliveries
from support import HOOK, DaemonProcess, World, payload, run_hook, wait_until


def spooled(world: World) -> list[Path]:
    return sorted((world.project / ".elsabro" / "spool").glob("*.json"))


def numbered(n: int) -> dict[str, Any]:
    """A PostToolUse payload told apart by its tool_use_id."""
    return {**payload(), "tool_use_id": f"toolu_{n:03d}"}


def stored_ids(world: World) -> list[str]:
    return [r["payload"]["tool_use_id"] for r in world.events() if r["topic"] == "tool.bash.completed"]


def deliver(world: World, body: dict[str, Any], delivery: str) -> tuple[int, str]:
    """One live delivery the way the hook sends it (curl over the socket, the delivery id named)."""
    result = subprocess.run(
        [
            "curl", "-q", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10",
            "--unix-socket", str(world.settings.socket_path), "-X", "POST", "--data-binary", "@-",
            "-H", f"Elsabro-Project: {world.project}", "-H", f"Elsabro-Delivery: {delivery}",
            "-H", "Content-Type: application/json", "http://elsabro/v1/hook",
        ],
        input=json.dumps(body).encode(),
        capture_output=True,
        timeout=20,
        check=True,
    )  # fmt: skip
    text, status = result.stdout.decode().rsplit("\n", 1)
    return int(status), text


def open_project(world: World) -> None:
    world.client().publish({"topic": "open.the.project"})


def test_hooks_sent_to_a_paused_daemon_that_is_then_killed_are_all_stored_once(world: World) -> None:
    daemon = DaemonProcess(world).start()
    open_project(world)
    assert run_hook(world, payload("SessionStart")).returncode == 0
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGSTOP)  # hung (a long redaction pass, a stuck disk)
    try:
        for n in range(4):
            result = run_hook(world, numbered(n))
            assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        # Each hook timed out and kept its payload: the requests in the socket's queue die with the daemon.
        assert len(spooled(world)) == 4
    finally:
        daemon.kill()
    DaemonProcess(world).start()
    open_project(world)
    wait_until(lambda: not spooled(world), what="the spool to drain")
    assert sorted(stored_ids(world)) == [f"toolu_{n:03d}" for n in range(4)]
    assert not list((world.project / ".elsabro" / "spool").iterdir())  # no copy left behind either
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True


def test_hooks_sent_to_a_paused_daemon_that_resumes_are_stored_once(world: World) -> None:
    """On resume the daemon reads the queued requests and drains the hooks' spool files: one
    delivery, two ways in, stored once."""
    daemon = DaemonProcess(world).start()
    open_project(world)
    assert run_hook(world, payload("SessionStart")).returncode == 0
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        for n in range(4):
            assert run_hook(world, numbered(n)).returncode == 0
        assert len(spooled(world)) == 4
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    wait_until(lambda: not spooled(world) and len(stored_ids(world)) >= 4, what="both ways in to settle")
    # Queued behind the hooks' connections: once this is stored, every queued request was taken.
    open_project(world)
    assert sorted(stored_ids(world)) == [f"toolu_{n:03d}" for n in range(4)]
    records = [r for r in world.events() if r["topic"] == "tool.bash.completed"]
    assert all(r["metadata"]["spoolId"].endswith(".json") for r in records)
    assert not list((world.project / ".elsabro" / "spool").iterdir())  # no copy left behind


def test_with_the_daemon_up_no_copy_of_the_payload_stays(world: World, daemon: DaemonProcess) -> None:
    for n in range(3):
        assert run_hook(world, numbered(n)).returncode == 0
    # On a loaded machine a hook may time out (the first event of a session waits up to 0.3 s
    # for its start) and spool its copy: then the drain removes it. Either way none stays.
    spool = world.project / ".elsabro" / "spool"
    wait_until(lambda: not list(spool.iterdir()), what="no copy left")
    assert sorted(stored_ids(world)) == ["toolu_000", "toolu_001", "toolu_002"]


def test_a_delivery_stored_live_is_not_stored_again_from_its_spool_file(world: World) -> None:
    DaemonProcess(world).start()
    open_project(world)
    delivery = "1700000000000000001-4242"
    assert deliver(world, numbered(1), delivery)[0] == 200
    [record] = [r for r in world.events() if r["topic"] == "tool.bash.completed"]
    assert record["metadata"]["spoolId"] == f"{delivery}.json"
    spool = world.project / ".elsabro" / "spool"
    # The hook gave up before the answer came and spooled its copy under the delivery's name.
    (spool / f"{delivery}.json").write_text(json.dumps(numbered(1)))
    wait_until(lambda: not spooled(world), what="the watched spool to drain")
    assert stored_ids(world) == ["toolu_001"]
    # The same after a crash: the id is recovered from the log.
    world.daemons[-1].kill()
    (spool / f"{delivery}.json").write_text(json.dumps(numbered(1)))
    DaemonProcess(world).start()
    open_project(world)
    assert not spooled(world)
    assert stored_ids(world) == ["toolu_001"]


def test_a_late_live_delivery_whose_spool_file_was_drained_is_not_stored_again(world: World) -> None:
    spool = world.project / ".elsabro" / "spool"
    spool.mkdir(parents=True)
    delivery = "1700000000000000002-4243"
    (spool / f"{delivery}.json").write_text(json.dumps(numbered(2)))
    DaemonProcess(world).start()
    open_project(world)  # drains the spool first
    assert stored_ids(world) == ["toolu_002"]
    status, body = deliver(world, numbered(2), delivery)
    assert status == 200 and json.loads(body) == {"duplicate": delivery}
    assert stored_ids(world) == ["toolu_002"]


def test_a_delivery_id_that_is_not_a_spool_name_is_refused(world: World, daemon: DaemonProcess) -> None:
    status, body = deliver(world, numbered(3), "../../escape")
    assert status == 400 and "Elsabro-Delivery must be" in body
    assert world.events() == [] and not (world.project / ".elsabro" / "escape.json").exists()


def _fill(directory: Path, leave_pages: int = 0) -> Path:
    """Fill a tmpfs up, then give back `leave_pages` pages of 4 KiB."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left"):
            for _ in range(10_000):  # 1 MiB fills long before this bound
                os.write(fd, b"x" * 4096)
        size = os.fstat(fd).st_size
        os.ftruncate(fd, size - size % 4096 - leave_pages * 4096)
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def full_disks(world: World) -> Iterator[World]:
    """The project's log and spool each on a 1 MiB tmpfs of their own, so both can really fill up."""
    mounts = [world.project / ".elsabro" / "events", world.project / ".elsabro" / "spool"]
    mounted = []
    try:
        for where in mounts:
            where.mkdir(parents=True)
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(where)])
            if done.returncode != 0:
                pytest.skip("mounting a tmpfs needs root; tests/test_store.py injects ENOSPC instead")
            mounted.append(where)
        yield world
    finally:
        for daemon in world.daemons:
            daemon.close()
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_when_the_daemon_can_neither_store_nor_spool_the_hook_spools_its_own_copy(full_disks: World) -> None:
    world = full_disks
    world.env["ELSABRO_MAINTENANCE_INTERVAL_S"] = "0.2"
    DaemonProcess(world).start()
    client = world.client()
    client.publish({"topic": "before.full"})
    events_filler = _fill(world.project / ".elsabro" / "events")
    for _ in range(100):  # the segment's last page may still have room for a few small events
        refused = world.cli("publish", "pad", "--data", json.dumps({"pad": "z" * 500}), check=False)
        if refused.returncode != 0:
            break
    else:
        raise AssertionError("the log's disk never filled up")
    # One page of the spool left: room for the hook's compact payload, not for the copy the daemon
    # would write (json.dumps spaces it out), so the daemon can neither store nor spool this event.
    body = {**numbered(7), "tool_response": {f"k{n}": n for n in range(300)}}
    compact = json.dumps(body, separators=(",", ":")).encode()
    assert len(compact) <= 4096 < len(json.dumps(body).encode())
    spool_filler = _fill(world.project / ".elsabro" / "spool", leave_pages=1)
    result = run_hook(world, compact)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    [kept] = spooled(world)
    assert kept.read_bytes() == compact
    assert [p.name for p in kept.parent.iterdir() if p.name.startswith(".")] == []  # no partial files
    events_filler.unlink()
    spool_filler.unlink()  # space is back: the daemon's retries drain the hook's file
    wait_until(lambda: not spooled(world), what="the spool to drain")
    assert stored_ids(world) == ["toolu_007"]
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True


# -- no shared or foreign socket ---------------------------------------------------------------

LISTENER = r"""
import os, socket, sys
path, record, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chown(path, owner, owner)
server.listen(8)
open(record + ".ready", "w").close()
while True:
    conn, _ = server.accept()
    conn.settimeout(2)
    try:
        data = conn.recv(1 << 20)
    except OSError:
        data = b""
    with open(record, "ab") as out:
        out.write(data)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    conn.close()
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Any]:
    """A stranger's HTTP listener on a Unix socket; it records every byte it is sent."""
    started: list[subprocess.Popen[bytes]] = []

    def start(path: Path, owner: int) -> Path:
        record = tmp_path / f"received-{len(started)}"
        record.touch()
        process = subprocess.Popen([sys.executable, "-c", LISTENER, str(path), str(record), str(owner)])
        started.append(process)
        wait_until(lambda: Path(f"{record}.ready").exists() or process.poll() is not None, what="listener")
        assert process.poll() is None
        return record

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_the_hook_never_sends_to_a_socket_another_user_owns(world: World, listener: Any) -> None:
    sock = world.root / "run" / "d.sock"
    sock.parent.mkdir()
    received = listener(sock, 65534)  # nobody's
    assert sock.stat().st_uid == 65534
    result = run_hook(world, numbered(8))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert received.read_bytes() == b""
    [kept] = spooled(world)
    assert json.loads(kept.read_text()) == numbered(8)


SHARED = Path("/tmp/.local/state/elsabro/daemon.sock")  # what `${HOME:-/tmp}` used to make of no HOME


def test_with_no_private_runtime_or_home_directory_the_hook_spools(world: World, listener: Any) -> None:
    if SHARED.exists() or SHARED.is_symlink():
        pytest.skip(f"{SHARED} exists already: not ours to replace")
    made = [p for p in (SHARED.parent, SHARED.parent.parent, SHARED.parent.parent.parent) if not p.exists()]
    SHARED.parent.mkdir(parents=True, exist_ok=True)
    try:
        received = listener(SHARED, os.getuid())  # ours even: a path every user can take is no place
        env = {k: v for k, v in world.env.items() if k not in ("HOME", "XDG_RUNTIME_DIR", "ELSABRO_SOCKET")}
        full = {**env, "CLAUDE_PROJECT_DIR": str(world.project), "ELSABRO_BIN": "/bin/false"}
        data = json.dumps(numbered(9)).encode()
        result = subprocess.run(["/bin/sh", str(HOOK)], input=data, env=full, capture_output=True, timeout=30)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        assert received.read_bytes() == b""
        [kept] = spooled(world)
        assert json.loads(kept.read_text()) == numbered(9)
    finally:
        SHARED.unlink(missing_ok=True)
        for directory in made:
            directory.rmdir()


def test_payloads_the_hook_keeps_before_any_daemon_opened_the_project_stay_out_of_git(world: World) -> None:
    subprocess.run(["git", "init", "-q", str(world.project)], check=True)
    assert run_hook(world, numbered(10)).returncode == 0
    assert len(spooled(world)) == 1
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=world.project, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert listed == ["??", ".elsabro/.gitignore"]


def test_the_remembered_deliveries_are_bounded_and_forget_the_oldest_first() -> None:
    recovered = {f"17000000000000000{n:02d}-1.json" for n in range(10)}  # a set: no order of its own
    deliveries = Deliveries(recovered, keep=3)
    assert [deliveries.is_stored(f"17000000000000000{n:02d}-1.json") for n in (6, 7, 8, 9)] == [
        False,
        True,
        True,
        True,
    ]
    deliveries.claim("1700000000000000100-1.json")
    deliveries.done(["1700000000000000100-1.json"], stored=True)
    assert deliveries.is_stored("1700000000000000100-1.json")
    assert not deliveries.is_stored("1700000000000000007-1.json")
