"""What every benchmark section shares: figures and their summary, a throwaway world, daemons.

A figure is a list of samples (one per run, after a warm-up) summarised by its median,
min and max; the target is judged on the median only, because on a shared, noisy
machine min and max mostly measure the neighbours.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elsabro.core.settings import Settings
from elsabro.daemon.client import Client, is_running

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "hooks" / "elsabro-hook.sh"
FIXTURES = REPO / "tests" / "fixtures" / "claude-code-2.1.197"

# Polling interval while waiting for a daemon: short, so start-up times are not rounded up.
POLL_INTERVAL_S = 0.002


@dataclass(frozen=True)
class Target:
    """A goal for a figure's median: `op` is one of <=, <, >=, >."""

    op: str
    value: float

    def met(self, median: float) -> bool:
        checks: dict[str, Callable[[float, float], bool]] = {
            "<=": lambda a, b: a <= b,
            "<": lambda a, b: a < b,
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
        }
        return checks[self.op](median, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Figure:
    """One measured quantity: its samples and what they should be."""

    name: str
    section: str
    unit: str
    samples: list[float]
    target: Target | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    def to_json(self) -> dict[str, Any]:
        if not self.samples or not all(math.isfinite(s) for s in self.samples):
            raise ValueError(f"figure {self.name} has no usable samples: {self.samples!r}")
        return {
            "section": self.section,
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "unit": self.unit,
            "runs": len(self.samples),
            "samples": self.samples,
            "target": str(self.target) if self.target else None,
            "met": self.target.met(self.median) if self.target else None,
            "note": self.note,
        }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation: p99 is a latency some request saw)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy, or raise after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def clean_env(home: Path, socket_path: Path) -> dict[str, str]:
    """The inherited environment minus anything that would point at a real elsabro or Claude."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("ELSABRO_", "XDG_", "CLAUDE"))
    }
    env.update(HOME=str(home), ELSABRO_SOCKET=str(socket_path))
    return env


class World:
    """A throwaway root with a HOME, a daemon socket and project directories.

    The root lives directly under /tmp: AF_UNIX socket paths must stay under ~100 bytes.
    """

    def __init__(self, name: str = "bench") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"elsabro-{name}-", dir="/tmp"))
        self.home = self.root / "home"
        self.home.mkdir()
        self.socket_path = self.root / "run" / "d.sock"
        self.env = clean_env(self.home, self.socket_path)
        self.settings = Settings.from_env(self.env)

    def project(self, name: str) -> Path:
        """A project directory (created on first use)."""
        path = self.root / "projects" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def client(self, project: Path | None = None, timeout_s: float = 60.0) -> Client:
        return Client(self.settings, str(project) if project else None, timeout_s=timeout_s)

    def trust(self, project: Path) -> None:
        """`elsabro trust` in a project, as its user would once its config is written."""
        subprocess.run(
            [sys.executable, "-m", "elsabro", "--project", str(project), "trust"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Daemon:
    """A real daemon subprocess serving one world."""

    world: World
    process: subprocess.Popen[bytes] | None = None
    startup_ms: float = field(default=math.nan)

    def start(self, timeout_s: float = 20.0) -> Daemon:
        """Start it and wait until it answers; `startup_ms` is spawn-to-first-answer."""
        started_ns = time.perf_counter_ns()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "elsabro", "daemon", "run", "--quiet"],
            env=self.world.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ready, timeout_s, "the daemon to answer")
        self.startup_ms = (time.perf_counter_ns() - started_ns) / 1e6
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the daemon exited with {self.process.returncode} at start")
        return is_running(self.world.settings)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def memory_mib(self, key: str = "VmRSS") -> float:
        """A memory line of /proc/<pid>/status (VmRSS: now, VmHWM: peak), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
        raise RuntimeError(f"no {key} in /proc/{self.pid}/status")

    def cpu_s(self) -> float:
        """CPU time (user + system) the daemon has used so far, from /proc/<pid>/stat."""
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self, timeout_s: float = 30.0) -> None:
        """kill -9: no shutdown, nothing kept beyond what was written; returns once it is gone."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=timeout_s)

    def open_fds(self) -> int:
        """How many file descriptors the daemon has open now (/proc/<pid>/fd)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not go within the deadline."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=timeout_s)


def timed_run(
    argv: list[str], stdin: bytes, env: dict[str, str], cwd: Path | None = None, timeout_s: float = 60.0
) -> float:
    """Whole-process wall time of one command, in ms; a failing command is an error, not a sample.

    No `timeout=` to subprocess: with one, Popen.wait polls with doubling sleeps
    (0.5, 1, 2, 4, 8 ms...) once the pipes close, and a command that closes its stdout
    and stderr early, as the hook does, would be timed to the next poll (16 ms for an
    8 ms hook). A timer thread enforces the deadline instead, and the wait stays a
    blocking waitpid that returns the moment the process exits.
    """
    process: subprocess.Popen[bytes] | None = None

    def kill() -> None:
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    watchdog = threading.Timer(timeout_s, kill)
    watchdog.start()
    try:
        started_ns = time.perf_counter_ns()
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        _, stderr = process.communicate(stdin)
        elapsed_ms = (time.perf_counter_ns() - started_ns) / 1e6
    finally:
        watchdog.cancel()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {process.returncode}: {stderr.decode(errors='replace')}")
    return elapsed_ms


class Worker:
    """A helper process driven by lines: commands on its stdin, one-line answers on its stdout.

    A thread reads the answers into a queue, so that waiting for one has a deadline and
    never misses a line already buffered.
    """

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()

    def _read_all(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the process exited or closed its stdout

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self, timeout_s: float) -> str:
        """The next line, or an error after the deadline or at the end of the output."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"{self.name} did not answer within {timeout_s:g} s") from None
        if line is None:
            self._lines.put(None)
            raise RuntimeError(f"{self.name} exited (code {self.process.poll()})")
        return line

    def close(self, timeout_s: float = 10.0) -> None:
        """End of commands (its stdin closes); killed if it does not exit within the deadline."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()


def report(result: dict[str, Any], json_path: Path | None, human: Callable[[dict[str, Any]], str]) -> int:
    """A pass/fail run's result: JSON on stdout (and in `json_path`), the summary on stderr;
    the exit code says whether it passed."""
    text = json.dumps(result, indent=2)
    if json_path:
        json_path.write_text(text + "\n")
    print(text)
    print(human(result), file=sys.stderr)
    return 0 if result["passed"] else 1
