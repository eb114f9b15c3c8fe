"""Record which hook events the real CLI raises for the scenario, via settings.json or a plugin dir.

Each hook writes its stdin payload to its own file named by a nanosecond timestamp: concurrent hooks
(parallel tool calls, several hooks of one event) never interleave bytes the way two appends to one
shared file could, and sorting the names gives arrival order. ``collect()`` merges them into a list.

Run as a script to do the proof in NOTES.md: ``python3 record_hooks.py [--runs N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from elsabro.install import versions
from run_claude import CLAUDE_VERSION, ScenarioRun, cache_dir, clean_env, ensure_claude, run_scenario
from scenario import expected_hooks


def events_for(version: str) -> list[str]:
    """Every event the version knows except WorktreeCreate/WorktreeRemove (registering
    WorktreeCreate replaces git worktree creation, so a logging hook would break it)."""
    return list(versions.profile(versions.parse_version(version)).events)


REC_ENV = "E2E_REC_DIR"  # where hooks write; set per run through the session env hooks inherit
#: POSIX sh: one file per event, written whole; prints nothing and exits 0 (never a control decision).
#: Without the record dir it drains stdin and does nothing (never writes to "/<ts>.json" by accident).
SETTINGS_COMMAND = (
    f'if [ -d "${REC_ENV}" ]; then cat > "${REC_ENV}/$(date +%s%N)-$$.json"; else cat > /dev/null; fi'
)
PLUGIN_SCRIPT = f'#!/bin/sh\n# Recording hook of the "rec" test plugin.\n{SETTINGS_COMMAND}\n'
PLUGIN_COMMAND = 'sh "${CLAUDE_PLUGIN_ROOT}/hooks/rec.sh"'  # proves ${CLAUDE_PLUGIN_ROOT} expands

FIELDS = ("hook_event_name", "tool_name", "tool_use_id", "agent_id", "agent_type", "notification_type")


def hooks_config(command: str, events: list[str]) -> dict[str, Any]:
    """``{"hooks": {...}}`` registering ``command`` on every event with no matcher (matches all)."""
    return {
        "hooks": {ev: [{"hooks": [{"type": "command", "command": command, "timeout": 10}]}] for ev in events}
    }


def write_settings_hooks(home_dir: Path, events: list[str]) -> None:
    """Register the recorder in the throwaway ``$HOME/.claude/settings.json``."""
    (home_dir / ".claude").mkdir(parents=True, exist_ok=True)
    config = hooks_config(SETTINGS_COMMAND, events)
    (home_dir / ".claude" / "settings.json").write_text(json.dumps(config, indent=1))


def make_plugin(plugin_dir: Path, events: list[str]) -> Path:
    """A minimal plugin ``rec`` whose hooks/hooks.json registers the recorder on every event."""
    (plugin_dir / ".claude-plugin").mkdir(parents=True, exist_ok=True)
    (plugin_dir / "hooks").mkdir(parents=True, exist_ok=True)
    manifest = {"name": "rec", "version": "0.0.1"}
    (plugin_dir / ".claude-plugin" / "plugin.json").write_text(json.dumps(manifest))
    (plugin_dir / "hooks" / "hooks.json").write_text(
        json.dumps(hooks_config(PLUGIN_COMMAND, events), indent=1)
    )
    (plugin_dir / "hooks" / "rec.sh").write_text(PLUGIN_SCRIPT)
    return plugin_dir


def collect(rec_dir: Path) -> list[dict[str, Any]]:
    """Payloads in arrival order (file names start with the hook's start time in ns)."""
    out: list[dict[str, Any]] = []
    for path in sorted(rec_dir.glob("*.json"), key=lambda p: int(p.name.split("-")[0])):
        raw = path.read_text()
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"hook_event_name": "<unparsable>", "raw": raw[:500]})
    return out


def summarize(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The (event, tool_name, tool_use_id, agent_id, agent_type, notification_type) tuples, in order."""
    return [tuple(r.get(f) for f in FIELDS) for r in records]


def multiset_key(records: list[dict[str, Any]]) -> collections.Counter[tuple[Any, ...]]:
    """Run-independent view: agent ids are random per run, so keep only whether one was present."""
    return collections.Counter(
        (
            r.get("hook_event_name"),
            r.get("tool_name"),
            r.get("tool_use_id"),
            bool(r.get("agent_id")),
            r.get("agent_type"),
            r.get("notification_type"),
        )
        for r in records
    )


def prepare_run(root: Path, mode: str, events: list[str]) -> tuple[Path, Path, Path, list[str]]:
    """Fresh project/HOME/record dirs under ``root``; returns them plus the extra CLI args."""
    shutil.rmtree(root, ignore_errors=True)
    project, home, rec = root / "project", root / "home", root / "rec"
    for d in (project, home, rec):
        d.mkdir(parents=True)
    # A CLAUDE.md so InstructionsLoaded has something to report.
    (project / "CLAUDE.md").write_text("# e2e project\nThis project is driven by a scripted fake API.\n")
    args: list[str] = []
    if mode == "settings":
        write_settings_hooks(home, events)
    else:
        args = ["--plugin-dir", str(make_plugin(root / "plugin", events))]
    return project, home, rec, args


def record(
    claude_bin: str, root: Path, mode: str, events: list[str], timeout: float = 180
) -> tuple[ScenarioRun, list[dict[str, Any]]]:
    """Run the scenario once with the recorder registered by ``mode`` ('settings' or 'plugin')."""
    project, home, rec, args = prepare_run(root, mode, events)
    run = run_scenario(
        claude_bin, project, home, extra_env={REC_ENV: str(rec)}, extra_args=args, timeout=timeout
    )
    time.sleep(0.5)  # a last hook may still be flushing its file when the CLI has exited
    return run, collect(rec)


def validate_plugin(claude_bin: str, plugin_dir: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``claude plugin validate <dir>`` in an isolated HOME."""
    env = {
        **clean_env(),
        "HOME": str(home),
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return subprocess.run(
        [claude_bin, "plugin", "validate", str(plugin_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", default=CLAUDE_VERSION, help="Claude Code version to run")
    parser.add_argument("--cache", default=None, help="npm prefix for the CLI (default: per version)")
    parser.add_argument("--out", default="/tmp/cc-e2e/proof", help="scratch root for the runs")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--extra-event", action="append", default=[], help="also register this name")
    opts = parser.parse_args(argv)
    claude_bin = ensure_claude(opts.cache or cache_dir(opts.version), opts.version)
    events = events_for(opts.version) + opts.extra_event
    out = Path(opts.out) / opts.version
    results: dict[str, list[collections.Counter[tuple[Any, ...]]]] = {}
    for mode in ("settings", "plugin"):
        for i in range(opts.runs):
            root = out / f"{mode}-{i}"
            run, records = record(claude_bin, root, mode, events)
            (root / "records.json").write_text(json.dumps(records, indent=1))
            (root / "requests.json").write_text(json.dumps(run.requests, indent=1))
            (root / "tools.json").write_text(json.dumps(run.tools, indent=1))
            print(
                f"== {mode} run {i}: rc={run.proc.returncode} {run.seconds:.2f}s "
                f"hooks={len(records)} api_requests={len(run.requests)} stdout={run.proc.stdout.strip()!r}"
            )
            if run.proc.returncode != 0:
                print(run.proc.stderr[-2000:], file=sys.stderr)
            for row in summarize(records):
                print("   ", row)
            results.setdefault(mode, []).append(multiset_key(records))
    as_expected = True
    for mode, keys in results.items():
        print(f"same multiset across {mode} runs:", all(k == keys[0] for k in keys))
        expected = collections.Counter(expected_hooks(opts.version, mode))
        matches = all(
            collections.Counter((e, t, u, a) for e, t, u, a, _, _ in k.elements()) == expected for k in keys
        )
        print(f"{mode} matches scenario.expected_hooks({opts.version!r}, {mode!r}):", matches)
        as_expected = as_expected and matches
    settings_key, plugin_key = results["settings"][0], results["plugin"][0]
    print("only settings:", dict(settings_key - plugin_key), "only plugin:", dict(plugin_key - settings_key))
    validate = validate_plugin(claude_bin, out / "plugin-0" / "plugin", out / "validate-home")
    print("plugin validate rc:", validate.returncode)
    print(validate.stdout + validate.stderr)
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
