"""`.elsabro/` is the user's alone: made owner-only, and refused when someone else owns it."""

from __future__ import annotations

import os
import stat

import pytest

from elsabro.core.errors import ProjectError
from support import DaemonProcess, World, configure, payload, run_hook


def test_an_elsabro_dir_open_to_everyone_is_made_owner_only(world: World, daemon: DaemonProcess) -> None:
    directory = world.project / ".elsabro"
    directory.mkdir()
    os.chmod(directory, 0o777)
    world.client().publish({"topic": "a.b"})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    made = [p for p in directory.rglob("*") if p.name != ".gitignore"]
    assert made, "the log was written"
    for path in made:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_an_elsabro_dir_another_user_owns_is_refused(world: World, daemon: DaemonProcess) -> None:
    directory = world.project / ".elsabro"
    directory.mkdir()
    os.chown(directory, 65534, 65534)
    with pytest.raises(ProjectError, match="owned by uid 65534, not by you: elsabro will not use it"):
        world.client().publish({"topic": "a.b"})
    assert list(directory.iterdir()) == []
    assert run_hook(world, payload("SessionStart")).returncode == 0  # the session is never broken


def test_an_elsabro_symlink_is_refused(world: World, daemon: DaemonProcess) -> None:
    elsewhere = world.root / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, world.project / ".elsabro")
    with pytest.raises(ProjectError, match="is a symbolic link; elsabro does not follow it"):
        world.client().publish({"topic": "a.b"})
    assert list(elsewhere.iterdir()) == []


def test_trust_takes_group_and_others_off_a_cloned_elsabro_dir(world: World) -> None:
    runs = {"name": "x", "topic": "a.b", "handler": {"type": "exec", "argv": ["true"]}}
    configure(world, {"subscriptions": [runs]})
    os.chmod(world.project / ".elsabro", 0o775)
    world.cli("trust")
    assert stat.S_IMODE((world.project / ".elsabro").stat().st_mode) == 0o700
