"""Helpers that start real elsabro pieces in a throwaway world (used by conftest's fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elsabro.config import trust
from elsabro.core.settings import Settings
from elsabro.daemon.client import Client, is_running

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


@dataclass
class World:
    """A throwaway HOME, socket and project, with the environment that points at them."""

    root: Path
    home: Path
    project: Path
    env: dict[str, str]
    daemons: list[DaemonProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = Settings.from_env(self.env)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        # platformdirs reads this process's environment: point the world's settings at the dirs
        # its own daemons and CLI runs use (the world's HOME), never the real user's.
        value.__dict__.update(_platform_dirs(self.env))
        self._settings = value

    def client(self, project: Path | str | None = None) -> Client:
        return Client(self.settings, str(project or self.project))

    def cli(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        cwd: Path | None = None,
        timeout_s: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `elsabro` entry point in this world."""
        result = subprocess.run(
            [sys.executable, "-m", "elsabro", *args],
            env=self.env,
            cwd=cwd or self.project,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"elsabro {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def events(self) -> list[dict[str, Any]]:
        """Every stored record of the project, read straight from the segment files.

        Only whole lines: a large record the daemon is writing right now may be read half written.
        """
        import json

        records = []
        for path in sorted((self.project / ".elsabro" / "events").glob("segment-*.jsonl")):
            whole = path.read_bytes().rpartition(b"\n")[0]
            records.extend(json.loads(line) for line in whole.splitlines())
        return records


def _platform_dirs(env: dict[str, str]) -> dict[str, Path]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        settings = Settings.from_env(env)
        return {name: getattr(settings, name) for name in ("state_dir", "log_dir", "user_config_file")}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def stop_any_daemon(root: Path) -> None:
    lock = root / "run" / "daemon.lock"
    if lock.exists():
        text = lock.read_text().strip()
        if text.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(text), signal.SIGKILL)


@dataclass
class DaemonProcess:
    """A real daemon subprocess in a world."""

    world: World
    process: subprocess.Popen[bytes] | None = None
    preexec: Callable[[], None] | None = None  # run in the child before exec (resource limits)

    def start(self) -> DaemonProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "elsabro", "daemon", "run", "--quiet"],
            env=self.world.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self.preexec,
        )
        self.world.daemons.append(self)
        wait_until(self._ready, what="the daemon to answer")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise AssertionError(f"daemon exited with {self.process.returncode}: {err}")
        return is_running(self.world.settings)

    def kill(self) -> None:
        """kill -9: no shutdown, no flush beyond what was fsynced."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def close(self) -> None:
        """Stop the process if it still runs and release its pipe."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
        if self.process.stderr is not None:
            self.process.stderr.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# -- shared by several test modules ---------------------------------------------------

HOOK = REPO / "hooks" / "elsabro-hook.sh"
DEADLINE_S = 20.0


def payload(name: str = "PostToolUse") -> dict[str, Any]:
    fixture = FIXTURES / "claude-code-2.1.197" / f"{name}.json"
    stdin: dict[str, Any] = json.loads(fixture.read_text())["stdin"]
    return stdin


def run_hook(world: World, body: dict[str, Any] | bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    full_env = {**world.env, "CLAUDE_PROJECT_DIR": str(world.project), "ELSABRO_BIN": "/bin/false", **env}
    return subprocess.run(["/bin/sh", str(HOOK)], input=data, env=full_env, capture_output=True, timeout=30)


def configure(world: World, config: dict[str, Any] | str, *, trusted: bool = True) -> None:
    """Write the project's config; trusted, as its user would after reading it (`elsabro trust`),
    unless `trusted=False`. Trust is recorded first: a running daemon never sees it untrusted."""
    raw = (config if isinstance(config, str) else json.dumps(config)).encode()
    (world.project / ".elsabro").mkdir(mode=0o700, exist_ok=True)
    if trusted:
        trust.record(world.settings.state_dir, world.project, raw)
    path = world.project / ".elsabro" / "config.json"
    temporary = path.with_name("config.json.partial")  # replaced whole: a reader never sees half
    temporary.write_bytes(raw)
    os.replace(temporary, path)


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    """Poll `predicate` (plain or async) until it is truthy, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)
