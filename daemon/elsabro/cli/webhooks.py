"""`elsabro webhooks ...`: endpoints in the project's config, the delivery log, sending again.

Parsing and printing only. add/update/remove edit `.elsabro/config.json` (validated,
then replaced atomically; the daemon picks the change up by itself) and need no daemon;
retry and redeliver ask the daemon to send.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elsabro.core.errors import UsageError

if TYPE_CHECKING:
    from elsabro.cli.context import Context


def _endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.url:
        fields["url"] = args.url
    if args.events:
        fields["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
    secrets: list[Any] = list(args.secret or [])
    secrets += [{"env": name} for name in args.secret_env or []]  # references: the file holds no secret
    secrets += [{"file": str(Path(path).expanduser().absolute())} for path in args.secret_file or []]
    if secrets:
        fields["secret"] = secrets[0] if len(secrets) == 1 else secrets
    if args.format:
        fields["format"] = args.format
    if args.header:
        pairs = [h.split("=", 1) for h in args.header]
        if any(len(p) != 2 for p in pairs):
            raise UsageError("--header takes NAME=VALUE")
        fields["headers"] = dict(pairs)
    if args.enabled is not None:
        fields["enabled"] = args.enabled
    if args.parallel:
        fields["parallel"] = True
    return fields


def cmd_webhooks(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.config import files
    from elsabro.delivery import webhooks

    project, user_file = Path(ctx.project), ctx.settings.user_config_file
    if args.action in ("add", "update", "remove"):
        return _edit(ctx, args)
    if args.action == "list":
        for endpoint in files.load(project, user_file).events.webhooks.endpoints:
            state = "enabled" if endpoint.enabled else "disabled"
            events = ",".join(endpoint.events)
            url = webhooks.safe_url(endpoint.url)
            print(f"{endpoint.id:<16} {state:<9} {endpoint.format:<12} {url:<40} {events}")
        return 0
    if args.action == "deliveries":
        return _print_deliveries(project, args)
    return _resend(ctx, args)


def _edit(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.config import edit, trust

    project, user_file, state_dir = Path(ctx.project), ctx.settings.user_config_file, ctx.settings.state_dir
    if not args.id:
        raise UsageError(f"webhooks {args.action} needs an endpoint id")
    if args.action == "add":
        if not args.url:
            raise UsageError("webhooks add needs --url")
        edit.add_endpoint(project, {"id": args.id, **_endpoint_fields(args)}, user_file, state_dir)
        print(f"added webhook endpoint {args.id}")
    elif args.action == "update":
        edit.update_endpoint(project, args.id, _endpoint_fields(args), user_file, state_dir)
        print(f"updated webhook endpoint {args.id}")
    else:
        edit.remove_endpoint(project, args.id, user_file, state_dir)
        print(f"removed webhook endpoint {args.id}")
    # An edit of a config that was not trusted leaves it untrusted: say so.
    untrusted = trust.load(project, user_file, state_dir).message(project)
    if untrusted:
        print(f"elsabro: {untrusted}", file=sys.stderr)
    return 0


def _print_deliveries(project: Path, args: argparse.Namespace) -> int:
    from elsabro.delivery import webhooks
    from elsabro.store.query import parse_time

    since = parse_time(args.since) if args.since else None
    rows = webhooks.deliveries(project, args.endpoint, args.status, since)
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        code = row["statusCode"] if row["statusCode"] is not None else "-"
        print(
            f"{row['deliveryId']}  {row['time']}  {row['endpoint']:<14} {row['status']:<8} {code!s:>4} "
            f"{row['attempts']:>2}x  {row['latencyMs']:>7.1f} ms  {row['error'] or ''}"
        )
    return 0


def _resend(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "retry":
        if not args.id:
            raise UsageError("webhooks retry needs a delivery id")
        body: dict[str, Any] = {"deliveryId": args.id}
    else:
        if not args.endpoint:
            raise UsageError("webhooks redeliver needs --endpoint")
        body = {"endpoint": args.endpoint, "since": args.since}
    results = ctx.with_daemon(lambda c: c.call_json("POST", "/v1/webhooks/resend", body))["results"]
    for result in results:
        print(f"{result['deliveryId']}  {'ok' if result['ok'] else 'failed: ' + str(result['error'])}")
    print(f"sent {len(results)}, succeeded {sum(r['ok'] for r in results)}")
    return 0 if all(r["ok"] for r in results) else 1


def register(commands: Any) -> None:
    hooks = commands.add_parser("webhooks", help="webhook endpoints, their delivery log, sending again")
    hooks.add_argument(
        "action", choices=["add", "list", "update", "remove", "deliveries", "retry", "redeliver"]
    )
    hooks.add_argument("id", nargs="?", help="endpoint id (add/update/remove) or delivery id (retry)")
    hooks.add_argument("--url")
    hooks.add_argument("--events", help="comma-separated topics: * for all, prefix.*, or patterns with #")
    hooks.add_argument("--secret", action="append", help="signing secret; repeat during a rotation")
    hooks.add_argument(
        "--secret-env", action="append", help="signing secret read from this variable of the daemon"
    )
    hooks.add_argument(
        "--secret-file", action="append", help="signing secret read from this file (outside the repo)"
    )
    hooks.add_argument("--format", choices=["elsabro", "standard", "cloudevents"])
    hooks.add_argument("--header", action="append", help="an extra header NAME=VALUE (repeatable)")
    hooks.add_argument("--enable", dest="enabled", action="store_true", default=None)
    hooks.add_argument("--disable", dest="enabled", action="store_false")
    hooks.add_argument("--parallel", action="store_true", help="deliver several at once, giving up order")
    hooks.add_argument("--endpoint", help="deliveries/redeliver: this endpoint only")
    hooks.add_argument("--status", choices=["success", "failed"], help="deliveries: by the latest attempt")
    hooks.add_argument("--since", help="ISO 8601 or a duration back from now")
    hooks.add_argument("--json", action="store_true")
    hooks.set_defaults(func=cmd_webhooks)
