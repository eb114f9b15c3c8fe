"""`elsabro verify` finds each kind of tampering; `elsabro repair` makes a damaged log writable again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.store import segments
from elsabro.store.audit import verify
from elsabro.store.log import ProjectLog
from support import DaemonProcess, World


def make_log(project: Path, count: int = 30, segment_max_bytes: int = 1500) -> Path:
    log = ProjectLog(project, Settings(socket_path=Path("/nonexistent"), segment_max_bytes=segment_max_bytes))
    log.open()

    async def fill() -> None:
        log.start()
        for n in range(count):
            await log.append([PublishRequest(topic="audit.e", payload={"n": n}).to_event()])
        await log.close()

    asyncio.run(fill())
    return project / ".elsabro" / "events"


def segment_files(events: Path) -> list[Path]:
    return [path for _, path in segments.list_segments(events)]


def test_an_intact_log_verifies(tmp_path: Path) -> None:
    report = verify(make_log(tmp_path))
    assert report.intact and report.records == 30 and report.segments > 3 and report.last_sequence == 30


def edit_line(path: Path, index: int, change: callable) -> None:  # type: ignore[valid-type]
    lines = path.read_bytes().split(b"\n")[:-1]
    lines = change(lines, index)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize(
    ("tamper", "sequence", "problem"),
    [
        ("byte", 2, "edited"),
        ("delete", 2, "missing or reordered"),
        ("swap", 2, "missing or reordered"),
        ("middle-segment", None, "starts at"),
        ("truncate", None, "starts at"),
    ],
)
def test_each_kind_of_tampering_is_named(
    tmp_path: Path, tamper: str, sequence: int | None, problem: str
) -> None:
    events = make_log(tmp_path)
    files = segment_files(events)
    first = files[0]
    first_count = len(first.read_bytes().splitlines())
    assert first_count >= 3
    if tamper == "byte":
        data = bytearray(first.read_bytes())
        data[data.index(b'"n":1') + 4] = ord("7")  # record 2 says n=7 now: still valid JSON
        first.write_bytes(bytes(data))
    elif tamper == "delete":
        edit_line(first, 1, lambda lines, i: lines[:i] + lines[i + 1 :])
    elif tamper == "swap":
        edit_line(first, 1, lambda lines, i: [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]])
    elif tamper == "middle-segment":
        files[2].unlink()
    else:
        data = files[1].read_bytes()
        files[1].write_bytes(data[: len(data) // 2 - 10].rsplit(b"\n", 1)[0] + b"\n")
    report = verify(events)
    assert report.finding is not None, tamper
    assert problem in report.finding.problem
    if sequence is not None:
        assert report.finding.sequence == sequence


def test_the_cli_verify_exit_codes(world: World) -> None:
    make_log(world.project)
    ok = world.cli("verify", "--json")
    assert json.loads(ok.stdout)["intact"] is True
    first = segment_files(world.project / ".elsabro" / "events")[0]
    data = bytearray(first.read_bytes())
    data[data.index(b'"n":2') + 4] = ord("9")
    first.write_bytes(bytes(data))
    bad = world.cli("verify", check=False)
    assert bad.returncode == 1 and "NOT intact at sequence 3" in bad.stdout


def test_repair_quarantines_from_the_damage_and_the_daemon_writes_again(world: World) -> None:
    world.env["ELSABRO_SEGMENT_MAX_BYTES"] = "1500"
    DaemonProcess(world).start()
    for n in range(20):
        world.client().publish({"topic": "r.e", "payload": {"n": n}})
    world.daemons[-1].terminate()
    newest = segment_files(world.project / ".elsabro" / "events")[-1]
    data = bytearray(newest.read_bytes())
    data[data.index(b'"sequence":') - 40] ^= 1  # damage inside the first record of the newest segment
    newest.write_bytes(bytes(data))
    DaemonProcess(world).start()
    refused = world.cli("publish", "r.after", check=False)
    assert refused.returncode == 1 and "elsabro repair" in refused.stderr

    out = world.cli("repair").stdout
    assert "stopped the daemon" in out and "moved" in out and "quarantine" in out
    assert list(newest.parent.glob("*.quarantine-*"))
    assert world.cli("verify").returncode == 0
    stored = json.loads(world.cli("publish", "r.after").stdout)  # a new daemon, writing again
    assert world.cli("verify").returncode == 0
    assert stored["sequence"] == verify(newest.parent).last_sequence


def test_repair_inside_a_batch_takes_the_whole_batch_and_the_daemon_keeps_what_repair_left(
    world: World,
) -> None:
    DaemonProcess(world).start()
    client = world.client()
    for n in range(3):
        client.publish({"topic": "r.single", "payload": {"n": n}})
    batch = client.publish_batch([{"topic": "r.batch", "payload": {"n": n}} for n in range(5)])
    assert [r["sequence"] for r in batch] == [4, 5, 6, 7, 8] and batch[0]["batchLast"] == 8
    client.publish({"topic": "r.single", "payload": {"n": 3}})
    world.daemons[-1].terminate()
    events = world.project / ".elsabro" / "events"
    [segment] = segment_files(events)
    data = bytearray(segment.read_bytes())
    data[data.index(b'"sequence":6') - 40] ^= 1  # damage the batch's middle record
    segment.write_bytes(bytes(data))

    out = world.cli("repair").stdout
    left = segment.read_bytes()
    DaemonProcess(world).start()  # recovery keeps every record repair left
    stored = world.client().publish({"topic": "r.after"})
    assert segment.read_bytes().startswith(left)  # what repair called intact, unchanged
    report = json.loads(world.cli("verify", "--json").stdout)
    assert report["intact"] is True and report["records"] == stored["sequence"]
    # The whole batch went, and repair said so.
    assert [json.loads(line)["sequence"] for line in left.splitlines()] == [1, 2, 3]
    assert "inside the batch that starts at sequence 4" in out
    assert "(sequences 4..9) to quarantine" in out
