"""`elsabro history|tail|export|verify|repair|cleanup`: reading and keeping the log (parse, print)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elsabro.core.errors import UsageError
from elsabro.daemon import client as client_mod
from elsabro.views.formats import FORMATS, write

if TYPE_CHECKING:
    from elsabro.cli.context import Context


def query_params(args: argparse.Namespace) -> dict[str, str]:
    """The daemon's query parameters for the filters a command was given."""
    from elsabro.store.query import parse_time  # resolved here, in the user's time zone

    params = {
        "topic": args.topic,
        "correlation": getattr(args, "correlation", None),
        "id": getattr(args, "id", None),
        "causedBy": getattr(args, "caused_by", None),
    }
    for name in ("since", "until"):
        value = getattr(args, name, None)
        params[name] = parse_time(value) if value else None
    if getattr(args, "limit", None) is not None:
        params["limit"] = str(args.limit)
    return {key: value for key, value in params.items() if value}


def _format(args: argparse.Namespace) -> str:
    return "jsonl" if args.json else str(args.format)


def _print(pieces: Iterable[str]) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()  # a pipe reader sees each event as it comes (tail -f)


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    params = query_params(args)
    _print(write(ctx.with_daemon(lambda c: c.stream("/v1/events", params)), _format(args)))
    return 0


def cmd_tail(ctx: Context, args: argparse.Namespace) -> int:
    params = query_params(args)
    if not args.follow:
        return cmd_history(ctx, args)
    params["follow"] = "1"
    lines = ctx.with_daemon(lambda c: c.stream("/v1/events", params))
    fmt = "table" if _format(args) == "table" else "jsonl"  # an endless array is never valid JSON
    try:
        _print(write(lines, fmt))
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    params = query_params(args)
    lines = ctx.with_daemon(lambda c: c.stream("/v1/events", params))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            for piece in write(lines, args.format):
                out.write(piece)
    else:
        _print(write(lines, args.format))
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.store.audit import verify_project

    report = verify_project(Path(ctx.project), ctx.settings)
    found = report.finding
    if args.json:
        summary = {
            "intact": report.intact,
            "records": report.records,
            "segments": report.segments,
            "firstBadSequence": found.sequence if found else None,
            "problem": found.problem if found else None,
        }
        print(json.dumps(summary))
    elif found is None:
        print(f"intact: {report.records} records in {report.segments} segments, chain verified")
    else:
        where = f"{found.segment.name}, byte {found.offset}"
        print(f"NOT intact at sequence {found.sequence}: {found.problem} ({where})")
    return 0 if report.intact else 1


def cmd_repair(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.store.audit import repair

    if client_mod.stop_daemon(ctx.settings):
        print("stopped the daemon (the next command starts it again)")
    result = repair(Path(ctx.project) / ".elsabro" / "events")
    if result.finding is None:
        print("nothing to repair: the log is intact")
        return 0
    removed = result.removed_sequences
    span = f"{min(removed)}..{max(removed)}" if removed else "none"
    print(f"damage at sequence {result.finding.sequence}: {result.finding.problem}")
    if result.batch_start is not None:
        print(f"it is inside the batch that starts at sequence {result.batch_start}: a batch goes whole")
    print(f"moved {len(removed)} records (sequences {span}) to quarantine:")
    for path in result.quarantined:
        print(f"  {path}")
    return 0


def cmd_cleanup(ctx: Context, args: argparse.Namespace) -> int:
    removed = ctx.with_daemon(lambda c: c.call_json("POST", "/v1/cleanup", {}))["removed"]
    if removed is None:
        print("nothing to remove under the retention policy")
    else:
        print(f"removed sequences {removed['firstSequence']}..{removed['lastSequence']}")
        if removed["archive"]:
            print(f"archived in {removed['archive']}")
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.store.query import parse_time

    filters = {
        "topic": args.topic,
        "since": parse_time(args.since),
        "until": parse_time(args.until) if args.until else None,
        "correlation": args.correlation,
    }
    if args.print:
        params = {key: value for key, value in filters.items() if value}
        for line in ctx.with_daemon(lambda c: c.stream("/v1/events", params)):
            record = json.loads(line)
            record["metadata"] = {**(record.get("metadata") or {}), "replay": True}
            print(json.dumps(record, ensure_ascii=False), flush=True)
        return 0
    target = _replay_target(args)
    body = {**filters, "target": target}
    steps = ctx.with_daemon(lambda c: c.post_stream("/v1/replay", body))
    bar = sys.stderr.isatty()  # a progress bar on a terminal, nothing when piped
    last: dict[str, Any] = {}
    for line in steps:
        last = json.loads(line)
        if bar:
            filled = int(last["fraction"] * 30)
            shown = "#" * filled + "." * (30 - filled)
            sys.stderr.write(f"\r[{shown}] {last['fraction']:6.1%}  {last['delivered']} delivered")
            sys.stderr.flush()
    if bar:
        sys.stderr.write("\n")
    print(
        f"replayed {last.get('delivered', 0)} events ({last.get('skipped', 0)} skipped by the filter, "
        f"{last.get('failed', 0)} failed)"
    )
    for failure in last.get("failures", []):
        print(f"failed {failure['id']}: {failure['error']}", file=sys.stderr)
    return 1 if last.get("failed") or not last.get("done") else 0


def _replay_target(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [
        ("subscription", args.to_subscription),
        ("webhook", args.webhook),
        ("exec", args.exec or None),
    ]
    given = [(key, value) for key, value in chosen if value]
    if len(given) != 1:
        raise UsageError("name exactly one target: --to-subscription, --exec, --webhook or --print")
    return dict(given)


# -- parsing -------------------------------------------------------------------------


def add_filters(parser: argparse.ArgumentParser, *, bounded: bool = True) -> None:
    """The filters of history, tail, export and replay."""
    parser.add_argument("--topic", help="topic or pattern: * is one segment, # any number")
    if bounded:
        parser.add_argument("--since", help="ISO 8601 or a duration back from now: 15m, 2h, 7d")
        parser.add_argument("--until", help="ISO 8601 or a duration back from now")
        parser.add_argument("--correlation", help="only this correlation id (a session)")
        parser.add_argument("--id", help="only the event with this id")
        parser.add_argument("--caused-by", metavar="ID", help="this event and every event it caused")


def _add_output(parser: argparse.ArgumentParser, *, limit: int | None) -> None:
    parser.add_argument("--limit", "-n", type=int, default=limit, help="only the last N matching events")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument("--json", action="store_true", help="the same as --format jsonl")


def register(commands: Any) -> None:
    history = commands.add_parser("history", help="stored events, oldest first")
    add_filters(history)
    _add_output(history, limit=None)
    history.set_defaults(func=cmd_history)

    tail = commands.add_parser("tail", help="the latest events; -f keeps following")
    add_filters(tail, bounded=False)
    _add_output(tail, limit=10)
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.set_defaults(func=cmd_tail)

    export = commands.add_parser("export", help="stored events as JSON Lines or a CloudEvents batch")
    add_filters(export)
    export.add_argument("--format", choices=["jsonl", "cloudevents"], default="jsonl")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    export.set_defaults(func=cmd_export)

    verify = commands.add_parser("verify", help="check the log's hash chain; exit 0 only if intact")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    repair = commands.add_parser("repair", help="quarantine damaged records so the log verifies again")
    repair.set_defaults(func=cmd_repair)

    replay = commands.add_parser("replay", help="send past events through a handler again, in log order")
    replay.add_argument("--topic", default="#", help="topic or pattern (default: every event)")
    replay.add_argument("--from", dest="since", required=True, help="ISO 8601 or a duration back: 2h")
    replay.add_argument("--to", dest="until", help="ISO 8601 or a duration back from now")
    replay.add_argument("--correlation", help="only this correlation id (a session)")
    replay.add_argument("--to-subscription", metavar="NAME", help="a subscription of the project's config")
    replay.add_argument("--webhook", metavar="ENDPOINT", help="a webhook endpoint of the project's config")
    replay.add_argument("--print", action="store_true", help="print the events (marked as a replay)")
    replay.add_argument(
        "--exec", nargs=argparse.REMAINDER, metavar="CMD", help="a command, last: --exec cmd args"
    )
    replay.set_defaults(func=cmd_replay)

    cleanup = commands.add_parser("cleanup", help="apply the retention policy now")
    cleanup.set_defaults(func=cmd_cleanup)
