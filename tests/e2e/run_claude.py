"""Install and run the real Claude Code CLI against :mod:`fake_anthropic`, fully offline.

``ensure_claude(cache_dir)`` installs the pinned CLI with npm (idempotent) and returns the binary path.
``run_claude(...)`` runs one ``claude -p`` with an isolated, offline environment and a hard timeout.
``run_scenario(...)`` does both halves of one test run: serve :class:`scenario.Scenario` and run the CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_anthropic import FakeAnthropic
from scenario import ALLOWED_TOOLS, PROMPT, Scenario

CLAUDE_VERSION = "2.1.197"
#: The versions the e2e suite runs: the oldest supported and the newest release observed.
CLAUDE_VERSIONS = ("2.1.197", "2.1.332")
NPM_PACKAGE = "@anthropic-ai/claude-code"
REPO_CACHE = Path(__file__).resolve().parents[2] / ".cache"


def cache_dir(version: str, root: Path = REPO_CACHE) -> Path:
    """The npm prefix of one version: ``.cache/claude-code-<version>``.

    2.1.197 was cached in ``.cache/claude-code`` before there were several versions; a working
    install there is used as is rather than downloaded again.
    """
    legacy = root / "claude-code"
    if version == "2.1.197" and not (root / f"claude-code-{version}").exists() and legacy.exists():
        return legacy
    return root / f"claude-code-{version}"


#: Env that keeps the CLI off the network (beyond ANTHROPIC_BASE_URL) and quiet.
OFFLINE_ENV = {
    "ANTHROPIC_API_KEY": "sk-test",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # alone enough to stop all non-loopback traffic
    # An API error (e.g. the fake is down) ends the run at once with a StopFailure hook and
    # "API Error: ..." on stdout, instead of minutes of retries with backoff.
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}

#: Parent variables never passed through: running the tests from inside a Claude Code session (which
#: exports CLAUDECODE, CLAUDE_CODE_*, maybe ANTHROPIC_*) or behind a proxy must not change the run.
_STRIP_PREFIXES = (
    "ANTHROPIC_",
    "CLAUDE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "XDG_",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "OTEL_",
    "AI_AGENT",
)


def _binary_ok(binary: Path, version: str) -> bool:
    """True if ``binary --version`` answers with ``version`` (a placeholder stub or broken install fails)."""
    if not binary.exists():
        return False
    try:
        # A throwaway HOME inside the npm prefix: never the real ~/.claude, nothing left behind.
        with tempfile.TemporaryDirectory(prefix="version-home-", dir=binary.parents[2]) as home:
            env = {**clean_env(), **OFFLINE_ENV, "HOME": home}
            out = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, timeout=60, env=env
            )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().startswith(version)


def ensure_claude(
    cache_dir: str | os.PathLike[str], version: str = CLAUDE_VERSION, timeout: float = 600
) -> str:
    """Install ``@anthropic-ai/claude-code@version`` under ``cache_dir`` unless already there.

    Returns the path of the ``claude`` binary. Raises ``RuntimeError`` if it cannot be made to run.
    """
    prefix = Path(cache_dir).resolve()
    binary = prefix / "node_modules" / ".bin" / "claude"
    if _binary_ok(binary, version):
        return str(binary)
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"{NPM_PACKAGE}@{version}"],
        check=True,
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if not _binary_ok(binary, version):
        # The postinstall copies the native binary over a stub; redo it if npm skipped scripts.
        pkg_dir = prefix / "node_modules" / NPM_PACKAGE
        subprocess.run(
            ["node", "install.cjs"],
            cwd=pkg_dir,
            timeout=timeout,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    if not _binary_ok(binary, version):
        raise RuntimeError(f"claude {version} not runnable at {binary}")
    return str(binary)


def clean_env() -> dict[str, str]:
    """The parent environment minus anything that could redirect or alter the CLI."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}


def claude_env(
    home_dir: str | os.PathLike[str], base_url: str, extra_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for one isolated offline run: HOME, XDG dirs and TMPDIR all under ``home_dir``."""
    home = Path(home_dir).resolve()
    env = clean_env()
    env.update(OFFLINE_ENV)
    env.update(
        {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": base_url,
            # Keep every per-user cache/state/tmp write inside the throwaway HOME.
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "TMPDIR": str(home / "tmp"),
            "CLAUDE_CODE_TMPDIR": str(home / "tmp"),
        }
    )
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra_env or {})
    return env


def run_claude(
    claude_bin: str,
    project_dir: str | os.PathLike[str],
    home_dir: str | os.PathLike[str],
    base_url: str,
    *,
    prompt: str = PROMPT,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run ``claude -p prompt --allowedTools ...`` in ``project_dir``; kill its process group on timeout.

    On timeout the returned process has ``returncode`` -9 and whatever output was captured, rather than
    raising, so a test can show the partial output.
    """
    args = [claude_bin, "-p", prompt, "--allowedTools", ALLOWED_TOOLS, *extra_args]
    proc = subprocess.Popen(
        args,
        cwd=str(project_dir),
        env=claude_env(home_dir, base_url, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # own group: hooks die with it
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(args, -9, out, (err or "") + f"\n[run_claude: timeout {timeout}s]")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@dataclass
class ScenarioRun:
    """Outcome of :func:`run_scenario`: the CLI process, the API requests it made, and wall time."""

    proc: subprocess.CompletedProcess[str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def run_scenario(
    claude_bin: str,
    project_dir: str | os.PathLike[str],
    home_dir: str | os.PathLike[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 180,
) -> ScenarioRun:
    """Serve the fixed scenario on an ephemeral port and run the CLI against it once."""
    Path(project_dir).mkdir(parents=True, exist_ok=True)
    Path(home_dir).mkdir(parents=True, exist_ok=True)
    with FakeAnthropic(Scenario(str(project_dir))) as api:
        start = time.monotonic()
        proc = run_claude(
            claude_bin,
            project_dir,
            home_dir,
            api.base_url,
            extra_env=extra_env,
            extra_args=extra_args,
            timeout=timeout,
        )
        seconds = time.monotonic() - start
        return ScenarioRun(proc, list(api.requests), api.advertised_tools(), seconds)
