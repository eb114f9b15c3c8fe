"""An invalid config is visible where the user looks: `subscriptions list`, `doctor`, the log.

At daemon start there is no last good config: an invalid file there leaves nothing
running, which the daemon's log used to misstate ("keeping the last good one") and
nothing else showed at all.
"""

from __future__ import annotations

from typing import Any

from support import DaemonProcess, World, configure, wait_until

GOOD = {"name": "audit", "topic": "a.b", "handler": {"type": "append", "path": "audit.jsonl"}}
BROKEN = {"name": "audit", "topic": "a.b", "handler": {"type": "append"}}


def write_config(world: World, subscriptions: list[dict[str, Any]]) -> None:
    configure(world, {"subscriptions": subscriptions})  # trusted, as its user would


def daemon_log(world: World) -> str:
    return (world.home / ".local" / "state" / "elsabro" / "log" / "daemon.log").read_text()


def test_an_invalid_config_at_start_shows_that_nothing_runs_and_later_that_the_last_good_one_does(
    world: World,
) -> None:
    write_config(world, [BROKEN])
    DaemonProcess(world).start()

    listed = world.cli("subscriptions", "list")
    assert listed.stdout.splitlines()[1:] == []  # nothing runs
    [warning] = listed.stderr.splitlines()
    assert "config is invalid, no subscription or webhook runs until it is fixed" in warning
    assert "subscriptions[0].handler" in warning and "elsabro config check" in warning

    doctor = world.cli("doctor", check=False)
    assert doctor.returncode == 1
    [line] = [line for line in doctor.stdout.splitlines() if " config " in line]
    assert line.startswith("FIX") and "no subscription or webhook runs" in line, line
    assert "subscriptions[0].handler" in line

    log = daemon_log(world)
    assert "no subscription or webhook runs until it is fixed" in log
    assert "keeping the last good one" not in log

    write_config(world, [GOOD])
    wait_until(
        lambda: (
            [r["name"] for r in world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]]
            == ["audit"]
        ),
        what="the fixed config applied",
    )
    fixed = world.cli("subscriptions", "list")
    assert fixed.stderr == "" and "audit" in fixed.stdout
    doctor = world.cli("doctor", check=False)
    [line] = [line for line in doctor.stdout.splitlines() if " config " in line]
    assert line.startswith("ok ") and "valid" in line, line

    write_config(world, [BROKEN])
    wait_until(lambda: "keeping the last good one" in daemon_log(world), what="the broken edit logged")
    again = world.cli("subscriptions", "list")
    assert "audit" in again.stdout  # still running
    assert "config is invalid, the last good config keeps running" in again.stderr
