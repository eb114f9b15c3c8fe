"""The `elsabro` command: parses arguments, calls the library, prints. Nothing else.

Errors elsabro raises on purpose print one line on stderr and exit 1 (`daemon status`
exits 3 when no daemon runs); argparse's usage errors exit 2. Imports stay lazy so
that `elsabro publish` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elsabro.cli.context import Context
from elsabro.core.errors import DaemonNotRunning, ElsabroError, UsageError
from elsabro.daemon import client as client_mod


def _json_arg(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


# -- commands ------------------------------------------------------------------------


def cmd_daemon(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings
    if args.action == "run":
        from elsabro.daemon.process import run

        # An explicit --project is opened at start: the hook names the project whose spool waits.
        run(settings, foreground=not args.quiet, open_at_start=[ctx.project] if args.project else None)
        return 0
    if args.action == "start":
        if not client_mod.is_running(settings):
            client_mod.start_daemon(settings)
        print(f"elsabro daemon running on {settings.socket_path}")
        return 0
    if args.action == "stop":
        stopped = client_mod.stop_daemon(settings)
        print("elsabro daemon stopped" if stopped else "elsabro daemon was not running")
        return 0
    try:
        status = client_mod.Client(settings, timeout_s=5.0).status()
    except DaemonNotRunning:
        print(json.dumps({"running": False}) if args.json else "elsabro daemon is not running")
        return 3
    if args.json:
        print(json.dumps({"running": True, **status}))
    else:
        print(f"elsabro {status['version']} running, pid {status['pid']}, up {status['uptimeS']:.0f} s")
        print(f"socket: {status['socket']}")
        for project in status["projects"]:
            print(f"project: {project}")
    return 0


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    event: dict[str, Any] = {
        "topic": args.topic,
        "payload": _json_arg(args.data, "--data") if args.data else None,
    }
    for key, value in (
        ("correlationId", args.correlation_id),
        ("causationId", args.causation_id),
        ("source", args.source),
        ("type", args.type),
    ):
        if value is not None:
            event[key] = value
    if args.metadata:
        event["metadata"] = _json_arg(args.metadata, "--metadata")
    stored = ctx.with_daemon(lambda c: c.publish(event))
    print(json.dumps(stored, ensure_ascii=False))
    return 0


def cmd_hooks(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.install import claude, versions

    path = claude.settings_path("project" if args.project_scope else "user", Path(ctx.project))
    if args.action == "install":
        profile = versions.profile(versions.installed_version(args.claude))
        plugin = claude.plugin_installed()
        events = claude.settings_events(profile, plugin, claude.registered_in(path))
        count = claude.install(path, events=events)
        route = "the plugin, and settings for the rest" if plugin else "settings only"
        print(f"Claude Code {profile.label}: route {route}")
        print(
            f"elsabro hooks registered for {count} events in {path}"
            + (f": {', '.join(events)}" if plugin else "")
        )
    elif claude.uninstall(path):
        print(f"elsabro hooks removed from {path}")
    else:
        print(f"no elsabro hooks in {path}")
    return 0


def cmd_doctor(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.install.doctor import run_checks

    checks = run_checks(ctx.settings, Path(ctx.project))
    for check in checks:
        print(f"{'ok ' if check.ok else 'FIX'}  {check.name:<12} {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


# -- parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elsabro", description="Event pipeline for coding agents.")
    parser.add_argument(
        "--project", help="project directory (default: $CLAUDE_PROJECT_DIR, git top level, cwd)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    daemon = commands.add_parser("daemon", help="start, stop, inspect or run the daemon")
    daemon.add_argument("action", choices=["start", "stop", "status", "run"])
    daemon.add_argument("--json", action="store_true", help="status as JSON")
    daemon.add_argument("--quiet", action="store_true", help="run: log only to the log file")
    daemon.set_defaults(func=cmd_daemon)

    publish = commands.add_parser("publish", help="publish one event")
    publish.add_argument("topic")
    publish.add_argument("--data", help="the payload as JSON, or - to read it from stdin")
    publish.add_argument("--correlation-id")
    publish.add_argument("--causation-id")
    publish.add_argument("--source")
    publish.add_argument("--type", help="default: inferred from the topic (agent.started -> AgentStarted)")
    publish.add_argument("--metadata", help="metadata as a JSON object")
    publish.set_defaults(func=cmd_publish)

    hooks = commands.add_parser(
        "hooks", help="register the hook in Claude Code settings (without the plugin)"
    )
    hooks.add_argument("action", choices=["install", "uninstall"])
    scope = hooks.add_mutually_exclusive_group()
    scope.add_argument(
        "--user", dest="project_scope", action="store_false", help="~/.claude/settings.json (default)"
    )
    scope.add_argument(
        "--project", dest="project_scope", action="store_true", help="<project>/.claude/settings.json"
    )
    hooks.add_argument(
        "--claude", default="claude", help="the Claude Code command whose version decides the events"
    )
    hooks.set_defaults(func=cmd_hooks, project_scope=False)

    doctor = commands.add_parser("doctor", help="check the whole chain and say what to fix")
    doctor.set_defaults(func=cmd_doctor)

    from elsabro.cli import log as cli_log
    from elsabro.cli import subscriptions as cli_subscriptions
    from elsabro.cli import trust as cli_trust
    from elsabro.cli import views as cli_views
    from elsabro.cli import webhooks as cli_webhooks

    cli_log.register(commands)
    cli_views.register(commands)
    cli_subscriptions.register(commands)
    cli_webhooks.register(commands)
    cli_trust.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(Context(args), args))
    except ElsabroError as exc:
        print(f"elsabro: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, DaemonNotRunning) and args.command == "daemon" else 1
    except BrokenPipeError:  # `elsabro history | head`
        return 0
