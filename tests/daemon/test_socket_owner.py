"""The daemon's socket is private: never in a directory shared by all users, never another
user's, and never a file that is not a socket (which is left as it was)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat

import pytest

from elsabro.bus.api import EventBus
from elsabro.core.errors import DaemonError, UsageError
from elsabro.core.settings import Settings
from elsabro.daemon.client import Client
from support import World

NOBODY = 65534


async def bus_publish(world: World) -> None:
    async with EventBus(world.project, settings=world.settings, start_daemon=False) as bus:
        await bus.publish("to.a.stranger", {"secret": 1})


def without_private_dirs(world: World) -> dict[str, str]:
    return {k: v for k, v in world.env.items() if k not in ("HOME", "XDG_RUNTIME_DIR", "ELSABRO_SOCKET")}


def test_no_home_and_no_runtime_dir_is_refused_not_a_shared_tmp_path(world: World) -> None:
    for env in ({}, {"HOME": ""}, {"HOME": "", "XDG_RUNTIME_DIR": ""}):
        with pytest.raises(UsageError, match="neither XDG_RUNTIME_DIR nor HOME is set"):
            Settings.from_env(env)
    assert str(Settings.from_env({"XDG_RUNTIME_DIR": "/run/user/7"}).socket_path) == (
        "/run/user/7/elsabro/daemon.sock"
    )
    env = without_private_dirs(world)
    world.env.clear()
    world.env.update(env)
    result = world.cli("daemon", "status", check=False)  # the CLI: one clear line
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "elsabro: no private place for the daemon's socket: neither XDG_RUNTIME_DIR nor HOME is set; "
        "set one of them, or ELSABRO_SOCKET"
    ]


def test_the_daemon_refuses_to_start_without_a_private_dir(world: World) -> None:
    env = without_private_dirs(world)
    world.env.clear()
    world.env.update(env)
    result = world.cli("daemon", "run", check=False, timeout_s=30)
    assert result.returncode == 1
    assert "neither XDG_RUNTIME_DIR nor HOME is set" in result.stderr


def test_a_socket_path_at_a_regular_file_is_refused_and_the_file_left_alone(world: World) -> None:
    directory = world.root / "shared"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    precious = directory / "notes.txt"
    precious.write_text("keep me\n")
    world.env["ELSABRO_SOCKET"] = str(precious)
    world.settings = Settings.from_env(world.env)
    result = world.cli("daemon", "run", check=False, timeout_s=30)
    assert result.returncode == 1
    assert f"{precious} exists and is not a socket" in result.stderr
    assert precious.read_text() == "keep me\n"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755  # not made owner-only either
    with pytest.raises(DaemonError, match="is not a socket"):
        Client(world.settings, str(world.project), timeout_s=2).status()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another user needs root")
def test_a_socket_of_another_user_is_refused_by_client_and_daemon(world: World) -> None:
    path = world.settings.socket_path
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
        stranger.bind(str(path))
        stranger.listen(8)
        os.chown(path, NOBODY, NOBODY)  # someone else answers on our path
        with pytest.raises(DaemonError, match=rf"{path} belongs to another user \(uid {NOBODY}\)"):
            Client(world.settings, str(world.project), timeout_s=2).status()
        with pytest.raises(DaemonError, match="belongs to another user"):
            asyncio.run(bus_publish(world))  # the Python API's client too
        stranger.setblocking(False)
        with pytest.raises(BlockingIOError):
            stranger.accept()  # no client connected: nothing was sent to the stranger
        result = world.cli("daemon", "run", check=False, timeout_s=30)
        assert result.returncode == 1
        assert "belongs to another user" in result.stderr
        assert path.exists()  # not deleted and replaced


def test_a_socket_path_through_a_file_is_one_clear_error(world: World) -> None:
    (world.root / "afile").write_text("")
    world.env["ELSABRO_SOCKET"] = str(world.root / "afile" / "d.sock")
    result = world.cli("daemon", "status", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"elsabro: cannot use {world.root}/afile/d.sock: Not a directory; "
        "set ELSABRO_SOCKET to a path of yours"
    ]
