"""kill -9 under load: every acknowledged event survives exactly once; a torn tail is cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import DaemonProcess, World, wait_until

# A publisher that records each acknowledged event id, flushed at once, until the daemon dies.
PUBLISHER = """
import sys
from elsabro.daemon.client import Client
from elsabro.core.settings import Settings
client = Client(Settings.from_env(), sys.argv[1])
with open(sys.argv[2], "a") as acks:
    for i in range(100000):
        try:
            if i % 10 == 0:
                batch = [{"topic": "crash.batch", "payload": {"i": i, "k": k}} for k in range(5)]
                stored = client.publish_batch(batch)
                acks.write("".join(r["id"] + "\\n" for r in stored))
            else:
                acks.write(client.publish({"topic": "crash.one", "payload": {"i": i}})["id"] + "\\n")
            acks.flush()
        except Exception:
            break
"""


def test_kill_9_under_load_loses_no_acknowledged_event(
    world: World, daemon: DaemonProcess, tmp_path: Path
) -> None:
    acks = [tmp_path / f"acks{n}.txt" for n in range(6)]
    publishers = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(world.project), str(path)], env=world.env)
        for path in acks
    ]
    wait_until(lambda: sum(p.stat().st_size for p in acks if p.exists()) > 30 * 2000, what="load to build up")
    daemon.kill()
    for publisher in publishers:
        publisher.wait(timeout=30)

    # The crash tore the last write: half a record after the last fsynced one.
    segment = sorted((world.project / ".elsabro" / "events").glob("segment-*.jsonl"))[-1]
    with open(segment, "ab") as fh:
        fh.write(b'{"id":"evt_torn","type":"CrashOne","topic":"crash.one","timestamp":"2026')

    DaemonProcess(world).start()
    world.client().publish({"topic": "after.restart"})  # opens the project: recovery runs

    records = world.events()
    assert [r["sequence"] for r in records] == list(range(1, len(records) + 1))
    stored_ids = [r["id"] for r in records]
    assert len(stored_ids) == len(set(stored_ids))
    acknowledged = [line for path in acks for line in path.read_text().split()]
    assert len(acknowledged) > 100
    assert set(acknowledged) <= set(stored_ids), "an acknowledged event was lost"
    # Batches are whole: every stored batch record has its four siblings.
    batches: dict[int, int] = {}
    for record in records:
        if record["topic"] == "crash.batch":
            batches[record["batchLast"]] = batches.get(record["batchLast"], 0) + 1
    assert set(batches.values()) <= {5}
    quarantined = list(segment.parent.glob("*.quarantine-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes().startswith(b'{"id":"evt_torn"')
    assert records[-1]["topic"] == "after.restart"
    assert "torn tail" in (world.home / ".local/state/elsabro/log/daemon.log").read_text()


def test_restart_after_kill_keeps_the_chain(world: World, daemon: DaemonProcess) -> None:
    client = world.client()
    for n in range(20):
        client.publish({"topic": "chain.x", "payload": n})
    daemon.kill()
    DaemonProcess(world).start()
    for n in range(5):
        client.publish({"topic": "chain.y", "payload": n})
    lines = b"".join(
        p.read_bytes() for p in sorted((world.project / ".elsabro/events").glob("segment-*"))
    ).split(b"\n")
    from elsabro.store.base import GENESIS_HASH, line_hash

    chain = GENESIS_HASH
    for line in filter(None, lines):
        assert json.loads(line)["prevHash"] == chain
        chain = line_hash(line)
