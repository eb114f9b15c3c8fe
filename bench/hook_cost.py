"""Hook cost per event: whole-process wall time of what Claude Code runs for one hook.

Variants, each fed the real PostToolUse payload on stdin:
  hook up     `sh hooks/elsabro-hook.sh` with the daemon answering (curl, fsync'd ack)
  hook spool  the same with no daemon: the payload goes to <project>/.elsabro/spool/
  floor       `sh -c 'cat >/dev/null'`: what any hook command costs at the least
  curl        `curl --version`: curl's own start-up, the floor of the daemon-up path
  python3     a minimal python3 forwarder over AF_UNIX, what most hook tools do

The variants run interleaved, one of each per round in shuffled order, so that noise
from the neighbours hits them alike; the python3/hook ratio is taken per round.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common import FIXTURES, HOOK, Figure, Target, World, timed_run

SECTION = "hook"

# A minimal forwarder as hook tools write them: read stdin, one HTTP request over the
# Unix socket, wait for the answer (the daemon answers once the event is fsynced).
PYTHON_FORWARDER = r"""
import os, socket, sys
body = sys.stdin.buffer.read()
project = os.environ["CLAUDE_PROJECT_DIR"].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["ELSABRO_SOCKET"])
s.sendall(b"POST /v1/hook HTTP/1.1\r\nHost: elsabro\r\nConnection: close\r\nElsabro-Project: " + project
          + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
answer = b""
while chunk := s.recv(65536):
    answer += chunk
sys.exit(0 if answer.startswith(b"HTTP/1.1 200") else 1)
"""


@dataclass(frozen=True)
class Variant:
    name: str
    argv: list[str]
    env: dict[str, str]


def hook_payload() -> bytes:
    """The real PostToolUse hook input, as one line."""
    fixture = json.loads((FIXTURES / "PostToolUse.json").read_text())
    return json.dumps(fixture["stdin"], separators=(",", ":")).encode()


def resolve_python3(env: dict[str, str]) -> tuple[str, str]:
    """(what `python3` on PATH is, the interpreter it ends up running).

    They differ under pyenv, whose shim is a bash script that costs a process or two
    more than the interpreter: the headline figure times the interpreter itself.
    """
    on_path = shutil.which("python3", path=env.get("PATH")) or "python3"
    real = subprocess.run(
        ["/usr/bin/env", "python3", "-c", "import sys; print(sys.executable)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    return on_path, real


def startup_hooks(python3: str, env: dict[str, str]) -> list[str]:
    """The .pth files that run code at every start of this interpreter (site's `import` lines).

    A normal start runs them, so they are part of a python3 forwarder's cost; naming
    them says how much of it belongs to this machine's install rather than to Python.
    """
    script = "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))"
    dirs = subprocess.run(
        [python3, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    found = []
    for directory in map(Path, dirs):
        for pth in sorted(directory.glob("*.pth")) if directory.is_dir() else []:
            lines = pth.read_text(errors="replace").splitlines()
            if any(line.startswith(("import ", "import\t")) for line in lines):
                found.append(pth.name)
    return found


def _variants(world: World, daemon_env: dict[str, str], python3: str) -> list[Variant]:
    up_env = {**daemon_env, "CLAUDE_PROJECT_DIR": str(world.project("hook-up"))}
    down_env = {
        **daemon_env,
        "CLAUDE_PROJECT_DIR": str(world.project("hook-spool")),
        # No socket there: the hook spools. /bin/true stands in for the daemon it would start.
        "ELSABRO_SOCKET": str(world.root / "down" / "d.sock"),
        "ELSABRO_BIN": "/bin/true",
    }
    return [
        Variant("hook_up_ms", ["sh", str(HOOK)], up_env),
        Variant("hook_spool_ms", ["sh", str(HOOK)], down_env),
        Variant("floor_sh_cat_ms", ["sh", "-c", "cat >/dev/null"], up_env),
        Variant("floor_curl_version_ms", ["curl", "--version"], up_env),
        Variant("python3_forwarder_ms", [python3, "-c", PYTHON_FORWARDER], up_env),
        Variant("python3_path_forwarder_ms", ["/usr/bin/env", "python3", "-c", PYTHON_FORWARDER], up_env),
    ]


def _check_delivery(world: World, rounds: int) -> None:
    """Guard against timing a hook that silently did nothing: count what each path left."""
    spooled = list((world.project("hook-spool") / ".elsabro" / "spool").glob("*.json"))
    if len(spooled) != rounds:
        raise RuntimeError(f"expected {rounds} spooled hook payloads, found {len(spooled)}")
    # Three variants deliver to the daemon each round: the hook and both python3 forwarders.
    stored = world.client(world.project("hook-up")).events({"topic": "tool.bash.completed"})
    if len(stored) != 3 * rounds:
        raise RuntimeError(f"expected {3 * rounds} events stored through the daemon, found {len(stored)}")


def measure(world: World, samples: int, warmup: int, seed: int = 1) -> tuple[list[Figure], list[str]]:
    """Time every variant `samples` times (after `warmup` untimed rounds), interleaved.

    The world's daemon must be running.
    """
    payload = hook_payload()
    on_path, python3 = resolve_python3(world.env)
    variants = _variants(world, world.env, python3)
    timings: dict[str, list[float]] = {v.name: [] for v in variants}
    ratios: list[float] = []
    order = random.Random(seed)
    for round_index in range(warmup + samples):
        order.shuffle(variants)
        this_round = {v.name: timed_run(v.argv, payload, v.env) for v in variants}
        if round_index < warmup:
            continue  # warm-up: caches, the daemon opening the project, the spool directory
        for name, elapsed_ms in this_round.items():
            timings[name].append(elapsed_ms)
        ratios.append(this_round["python3_forwarder_ms"] / this_round["hook_up_ms"])
    _check_delivery(world, warmup + samples)
    via_shim = on_path != python3
    hooks = startup_hooks(python3, world.env)
    notes = [
        f"python3 start-up runs these .pth hooks on this machine: {', '.join(hooks)}"
        if hooks
        else "python3 start-up runs no .pth import hooks on this machine"
    ]
    figures = [
        Figure("hook_up_ms", SECTION, "ms", timings["hook_up_ms"], Target("<=", 10), "sh + curl, daemon up"),
        Figure(
            "hook_spool_ms",
            SECTION,
            "ms",
            timings["hook_spool_ms"],
            Target("<=", 5),
            "daemon down: spool file",
        ),
        Figure("floor_sh_cat_ms", SECTION, "ms", timings["floor_sh_cat_ms"], note="sh -c 'cat >/dev/null'"),
        Figure(
            "floor_curl_version_ms",
            SECTION,
            "ms",
            timings["floor_curl_version_ms"],
            note="curl --version: curl's start-up alone",
        ),
        Figure(
            "python3_forwarder_ms",
            SECTION,
            "ms",
            timings["python3_forwarder_ms"],
            note=f"{python3} -c (normal start, site imported)",
        ),
        Figure(
            "python3_path_forwarder_ms",
            SECTION,
            "ms",
            timings["python3_path_forwarder_ms"],
            note=f"/usr/bin/env python3 -> {Path(on_path)}" + (" (a pyenv-style shim)" if via_shim else ""),
        ),
        Figure(
            "python3_over_hook_ratio",
            SECTION,
            "x",
            ratios,
            Target(">=", 5),
            "python3_forwarder_ms / hook_up_ms, per round",
        ),
    ]
    return figures, notes
