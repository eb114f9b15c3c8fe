"""install.sh, the README's first command, on a fresh HOME: installs, registers, starts, proves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from elsabro.install import claude, versions
from support import REPO, World, wait_until


def install(world: World, path_dirs: list[str]) -> subprocess.CompletedProcess[str]:
    python_dir = os.path.dirname(shutil.which("python3") or "/usr/bin/python3")
    env = {
        "HOME": str(world.home),
        "PATH": os.pathsep.join([*path_dirs, python_dir, "/usr/bin", "/bin"]),
        "ELSABRO_SOCKET": str(world.settings.socket_path),
        "PIP_CACHE_DIR": str(REPO / ".cache" / "pip"),  # the repository's, never the user's
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    env.update({key: value for key, value in os.environ.items() if key.startswith("PYENV")})
    return subprocess.run(
        ["sh", str(REPO / "install.sh")], env=env, capture_output=True, text=True, timeout=600, cwd=world.root
    )


def elsabro(world: World) -> Path:
    return world.home / ".local" / "bin" / "elsabro"


def test_install_without_claude_registers_hooks_and_starts_the_daemon(world: World) -> None:
    first = install(world, [])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "round trip" in first.stdout and "FIX" not in first.stdout
    settings = world.home / ".claude" / "settings.json"
    before = settings.read_bytes()
    assert "PreToolUse" in json.loads(before)["hooks"]
    status = subprocess.run(
        [str(elsabro(world)), "daemon", "status", "--json"], env=world.env, capture_output=True, text=True
    )
    pid = json.loads(status.stdout)["pid"]

    second = install(world, [])
    assert second.returncode == 0, second.stdout + second.stderr
    assert settings.read_bytes() == before  # running it twice changes nothing
    status = subprocess.run(
        [str(elsabro(world)), "daemon", "status", "--json"], env=world.env, capture_output=True, text=True
    )
    assert json.loads(status.stdout)["pid"] == pid


@pytest.mark.e2e
def test_install_with_claude_registers_the_plugin(world: World, tmp_path: Path) -> None:
    from run_claude import ensure_claude

    binary = Path(ensure_claude(REPO / ".cache" / "claude-code"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(binary)
    for _ in range(2):
        done = install(world, [str(bin_dir)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "FIX" not in done.stdout
    installed = json.loads((world.home / ".claude" / "plugins" / "installed_plugins.json").read_text())
    assert list(installed["plugins"]) == ["elsabro@elsabro"]
    settings = world.home / ".claude" / "settings.json"
    # The plugin runs the hook for its events; settings only for the ones it does not receive.
    rest = [event for event in claude.EVENTS if event not in versions.PLUGIN_EVENTS]
    assert claude.registration_counts(settings) == dict.fromkeys(rest, 1)


@pytest.mark.e2e
@pytest.mark.timeout(900)  # four install.sh runs (pip each time) and one CLI session
def test_install_without_claude_then_with_it_then_again_registers_each_event_once(
    world: World, tmp_path: Path
) -> None:
    """The order people meet: installed before Claude Code, then again after, then once more.

    Each run must leave every event of the installed version registered exactly once (the
    plugin for what it receives, settings for the rest), and a real session then stores
    every hook event once.
    """
    from test_claude_code import expected_topics, run_session

    from run_claude import cache_dir, ensure_claude

    version = "2.1.332"  # the newest: its settings part is the largest (new events)
    binary = Path(ensure_claude(cache_dir(version), version))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(binary)
    settings = world.home / ".claude" / "settings.json"

    first = install(world, [])
    assert first.returncode == 0, first.stdout + first.stderr
    assert set(claude.registered_in(settings)) == set(claude.EVENTS)  # no claude: settings carry all

    profile = versions.profile(versions.parse_version(version))
    rest = {event for event in profile.events if event not in versions.PLUGIN_EVENTS}
    for _ in range(2):
        done = install(world, [str(bin_dir)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "FIX" not in done.stdout, done.stdout
        assert f"Claude Code {version}" in done.stdout
        counts = claude.registration_counts(settings)
        assert set(counts) == rest and set(counts.values()) == {1}, counts
    installed = json.loads((world.home / ".claude" / "plugins" / "installed_plugins.json").read_text())
    assert list(installed["plugins"]) == ["elsabro@elsabro"]

    # And without claude once more: the plugin stays the route for its events, nothing doubles.
    again = install(world, [])
    assert again.returncode == 0 and "FIX" not in again.stdout, again.stdout + again.stderr
    assert set(claude.registration_counts(settings)) == rest

    (world.project / "CLAUDE.md").write_text("# e2e project\n")
    env = {
        "PATH": os.pathsep.join([str(bin_dir), str(world.home / ".local" / "bin"), "/usr/bin", "/bin"]),
        "ELSABRO_SOCKET": world.env["ELSABRO_SOCKET"],
    }
    run_session(world, str(binary), env)
    expected = expected_topics(version)
    wait_until(lambda: len(world.events()) >= sum(expected.values()), timeout_s=30, what="the session")
    assert Counter(r["topic"] for r in world.events()) == expected  # each hook event stored once
