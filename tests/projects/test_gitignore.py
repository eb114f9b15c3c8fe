"""`.elsabro/.gitignore`: the same few lines whoever writes it first, the daemon or the hook."""

from __future__ import annotations

from support import DaemonProcess, World, payload, run_hook, wait_until

EXPECTED = [
    "# Written by elsabro: the event log and its working files stay out of git.",
    "*",
    "!.gitignore",
    "!config.json",
    "!config.schema.json",
]


def test_the_daemon_and_the_hook_write_the_same_gitignore(world: World) -> None:
    by_hook = world.project / ".elsabro" / ".gitignore"
    assert run_hook(world, payload()).returncode == 0  # no daemon: the hook spools, and writes it
    assert by_hook.read_text().splitlines() == EXPECTED

    other = world.root / "other"
    other.mkdir()
    DaemonProcess(world).start()
    world.client(other).publish({"topic": "demo.x"})
    by_daemon = other / ".elsabro" / ".gitignore"
    wait_until(by_daemon.exists, what="the daemon's .gitignore")
    assert by_daemon.read_text().splitlines() == EXPECTED


def test_a_hook_for_a_directory_that_is_gone_creates_nothing(world: World) -> None:
    gone = world.root / "gone"
    result = run_hook(world, payload(), CLAUDE_PROJECT_DIR=str(gone))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert not gone.exists()
