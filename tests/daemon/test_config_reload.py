"""The daemon reloads a project's config when the file is written, and only then.

Every read of `config.json` by another program (an editor opening it, `cat`, a linter)
used to start a reload, since inotify reports opening and closing a file too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from support import DaemonProcess, World, configure, wait_until


def daemon_log(world: World) -> str:
    path = world.home / ".local" / "state" / "elsabro" / "log" / "daemon.log"
    return path.read_text() if path.exists() else ""


def reloads(world: World) -> int:
    return daemon_log(world).count(f"config reloaded for {world.project}")


def write_config(world: World, names: list[str]) -> None:
    subs: list[dict[str, Any]] = [
        {"name": name, "topic": "a.b", "handler": {"type": "append", "path": f"{name}.jsonl"}}
        for name in names
    ]
    configure(world, {"subscriptions": subs})  # trusted, and replaced whole


def subscriptions(world: World) -> list[str]:
    rows = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
    return sorted(row["name"] for row in rows)


def test_reading_the_config_does_not_reload_it_and_writing_it_does(world: World) -> None:
    write_config(world, ["first"])
    DaemonProcess(world).start()
    wait_until(lambda: subscriptions(world) == ["first"], what="the project open with its config")
    assert reloads(world) == 0

    config = world.project / ".elsabro" / "config.json"
    reader = "import sys\nfor _ in range(50):\n    open(sys.argv[1]).read()\n"
    subprocess.run([sys.executable, "-c", reader, str(config)], check=True, timeout=30)
    time.sleep(1.5)  # proves that nothing happens: a reload would come 0.2 s after the reads
    assert reloads(world) == 0, daemon_log(world)

    started = time.monotonic()
    write_config(world, ["first", "second"])
    wait_until(lambda: subscriptions(world) == ["first", "second"], what="the written config applied")
    applied_s = time.monotonic() - started
    wait_until(lambda: reloads(world) == 1, what="one reload in the daemon's log")
    assert applied_s < 5, applied_s  # within a second when the machine is not loaded
    time.sleep(0.5)
    assert reloads(world) == 1
