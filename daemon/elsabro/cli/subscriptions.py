"""The subscription commands of the `elsabro` CLI: config, wait, subscriptions, ack, dlq.

Parsing and printing only, like main.py, which registers these.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elsabro.core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from elsabro.cli.context import Context


def cmd_config(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.config import files as config

    if args.action == "schema":
        print(json.dumps(config.schema(), indent=2))
        return 0
    try:
        loaded = config.load(Path(ctx.project), ctx.settings.user_config_file)
    except ConfigError as exc:
        for line in exc.details:
            print(f"elsabro: {line}", file=sys.stderr)
        return 1
    endpoints = len(loaded.events.webhooks.endpoints)
    print(f"ok: {len(loaded.subscriptions)} subscriptions, {endpoints} webhook endpoints")
    for endpoint in loaded.events.webhooks.endpoints:
        for where in endpoint.literal_secrets():
            print(
                f"elsabro: warning: webhook {endpoint.id}: {where} is a literal secret in a file git"
                ' may commit; use {"env": "NAME"} or {"file": "/path/outside/the/repo"}',
                file=sys.stderr,
            )
    return 0


def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    """The seed's `once`: block until a matching event arrives, print it."""
    compiled = None
    if args.filter:
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            compiled = jmespath.compile(args.filter)
        except JMESPathError as exc:
            raise UsageError(f"invalid filter: {str(exc).splitlines()[0]}") from None
    deadline = time.monotonic() + args.timeout if args.timeout else None
    params = {"topic": args.topic, "follow": "1", "limit": "0"}
    lines = ctx.with_daemon(lambda c: c.stream("/v1/events", params, timeout_s=args.timeout))
    try:
        for line in lines:
            record = json.loads(line)
            if compiled is None or compiled.search(record):
                print(line.decode())
                return 0
            if deadline is not None and time.monotonic() > deadline:
                break
    except TimeoutError:
        pass
    print(f"elsabro: no matching event within {args.timeout:g} s", file=sys.stderr)
    return 1


def cmd_subscriptions(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "test":
        if not args.name or not args.event:
            raise UsageError("subscriptions test needs NAME and --event FILE")
        event = _read_json_file(args.event)
        result = ctx.with_daemon(
            lambda c: c.call_json("POST", "/v1/subscriptions/test", {"name": args.name, "event": event})
        )
        print("ok" if result["ok"] else f"failed: {result['error']}")
        return 0 if result["ok"] else 1
    answer = ctx.with_daemon(lambda c: c.call_json("GET", "/v1/subscriptions"))
    rows = answer["subscriptions"]
    if answer.get("untrusted"):
        print(f"elsabro: {answer['untrusted']}", file=sys.stderr)
    warning = config_warning(answer.get("config") or {})
    if warning:
        print(f"elsabro: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'NAME':<24} {'SELECTOR':<24} {'CURSOR':>8} {'LAG':>6} {'IN FLIGHT':>9} {'FAILURES':>8}  STATE")
    for row in rows:
        state = "stalled" if row["stalled"] else "ok"
        in_flight = row["inFlight"] if row["inFlight"] is not None else "-"
        print(
            f"{row['name']:<24} {row['selector']:<24} {row['cursor']:>8} {row['lag']:>6} {in_flight!s:>9} "
            f"{row['failures']:>8}  {state}" + (f" ({row['lastError']})" if row["lastError"] else "")
        )
    return 0


def config_warning(config: dict[str, Any]) -> str | None:
    """One line on what runs while the project's config is invalid (None when it is valid)."""
    problems = config.get("problems") or []
    if not problems:
        return None
    running = (
        "the last good config keeps running"
        if config.get("running") == "last good config"
        else "no subscription or webhook runs until it is fixed"
    )
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"the config is invalid, {running}: {problems[0]}{more}; see `elsabro config check`"


def cmd_ack(ctx: Context, args: argparse.Namespace) -> int:
    body = {"subscription": args.subscription, "eventId": args.event_id, "ok": args.command == "ack"}
    ctx.with_daemon(lambda c: c.call_json("POST", "/v1/ack", body))
    return 0


def cmd_dlq(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.ids:
            raise UsageError("dlq show needs an id")
        print(
            json.dumps(
                ctx.with_daemon(lambda c: c.call_json("GET", "/v1/deadletters", params={"id": args.ids[0]})),
                indent=2,
            )
        )
        return 0
    if args.action == "list":
        params = {k: v for k, v in (("subscription", args.subscription), ("since", _since(args))) if v}
        entries = ctx.with_daemon(lambda c: c.call_json("GET", "/v1/deadletters", params=params))[
            "deadLetters"
        ]
        for entry in entries:
            event = entry["originalEvent"]
            print(
                f"{entry['id']}  {entry['failedAt']}  {entry['subscriber']:<20} {event['topic']:<28} "
                f"{entry['error']['message']}"
            )
        return 0
    selector: dict[str, Any] = (
        {"ids": args.ids} if args.ids else {"subscription": args.subscription, "all": args.all}
    )
    if not (args.ids or args.subscription or args.all):
        raise UsageError(f"dlq {args.action} needs ids, --subscription or --all")
    result = ctx.with_daemon(lambda c: c.call_json("POST", f"/v1/deadletters/{args.action}", selector))
    if args.action == "purge":
        print(f"purged {result['purged']}")
        return 0
    for failure in result["failed"]:
        print(f"still failing: {failure['id']}: {failure['error']}")
    print(f"retried {len(result['succeeded']) + len(result['failed'])}, succeeded {len(result['succeeded'])}")
    return 0 if not result["failed"] else 1


def _since(args: argparse.Namespace) -> str | None:
    from elsabro.store.query import parse_time

    return parse_time(args.since) if args.since else None


def _read_json_file(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        return json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None


def register(commands: Any) -> None:
    """Add these commands to the CLI's subparsers."""
    config = commands.add_parser("config", help="check the project's config, or print its JSON Schema")
    config.add_argument("action", choices=["check", "schema"])
    config.set_defaults(func=cmd_config)

    wait = commands.add_parser(
        "wait", help="block until a matching event arrives, print it (the seed's once)"
    )
    wait.add_argument("topic", help="topic or pattern")
    wait.add_argument("--filter", help="a JMESPath expression over the event; truthy matches")
    wait.add_argument("--timeout", type=float, help="seconds; exit 1 when nothing matched by then")
    wait.set_defaults(func=cmd_wait)

    subs = commands.add_parser("subscriptions", help="the state of each subscription, or test one")
    subs.add_argument("action", choices=["list", "test"])
    subs.add_argument("name", nargs="?", help="test: the subscription")
    subs.add_argument("--event", help="test: a file with an event as JSON (- for stdin)")
    subs.add_argument("--json", action="store_true")
    subs.set_defaults(func=cmd_subscriptions)

    for verb, text in (("ack", "acknowledge"), ("nack", "refuse (redeliver)")):
        parser = commands.add_parser(verb, help=f"{text} an event for a subscription with manual acks")
        parser.add_argument("subscription")
        parser.add_argument("event_id")
        parser.set_defaults(func=cmd_ack)

    dlq = commands.add_parser("dlq", help="dead letters: list, show, retry, purge")
    dlq.add_argument("action", choices=["list", "show", "retry", "purge"])
    dlq.add_argument("ids", nargs="*", help="dead letter ids")
    dlq.add_argument("--subscription")
    dlq.add_argument("--since", help="ISO 8601 or a duration back from now")
    dlq.add_argument("--all", action="store_true")
    dlq.set_defaults(func=cmd_dlq)
