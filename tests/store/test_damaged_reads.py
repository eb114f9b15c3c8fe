"""A log damaged in the middle is an error on every read, never an empty history.

The daemon refuses to write such a log (writes are refused until `elsabro repair`);
reading it used to answer nothing at all: `history` printed nothing and `sessions`
said no sessions were recorded, with no hint that anything was wrong.
"""

from __future__ import annotations

import json

import pytest

from elsabro.store import segments
from support import DaemonProcess, World, payload, run_hook


@pytest.mark.parametrize(
    "command",
    [
        ("history",),
        ("sessions",),
        ("tasks",),
        ("stats",),
        ("session", "s-damaged"),
        ("replay", "--from", "1h", "--exec", "true"),
    ],
)
def test_reading_a_damaged_log_says_so_and_names_verify_and_repair(
    world: World, command: tuple[str, ...]
) -> None:
    DaemonProcess(world).start()
    hook = {**payload("UserPromptSubmit"), "session_id": "s-damaged", "cwd": str(world.project)}
    assert run_hook(world, hook).returncode == 0
    for n in range(5):
        world.client().publish({"topic": "r.e", "correlationId": "s-damaged", "payload": {"n": n}})
    assert world.cli("history").stdout.count("r.e") == 5
    world.daemons[-1].terminate()

    [(_, segment)] = segments.list_segments(world.project / ".elsabro" / "events")
    lines = segment.read_bytes().split(b"\n")
    lines[2] = lines[2][:10] + b"#damaged#" + lines[2][19:]  # a record in the middle, records after it
    segment.write_bytes(b"\n".join(lines))
    DaemonProcess(world).start()

    result = world.cli(*command, check=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "damaged" in line and "elsabro verify" in line and "elsabro repair" in line, line

    world.cli("repair")
    assert json.loads(world.cli("verify", "--json").stdout)["intact"] is True
