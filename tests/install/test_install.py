"""install.sh, the README's first command, on a fresh HOME: installs, registers, starts, proves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO, World


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

    claude = Path(ensure_claude(REPO / ".cache" / "claude-code"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(claude)
    for _ in range(2):
        done = install(world, [str(bin_dir)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "FIX" not in done.stdout
    installed = json.loads((world.home / ".claude" / "plugins" / "installed_plugins.json").read_text())
    assert list(installed["plugins"]) == ["elsabro@elsabro"]
    settings = world.home / ".claude" / "settings.json"
    assert "hooks" not in json.loads(settings.read_text())  # the plugin, not settings, runs the hook
