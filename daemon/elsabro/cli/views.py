"""The read-model commands of the `elsabro` CLI: sessions, session ID, tasks, agents, stats.

The daemon folds the project's log into rows (views/projections.py, `GET /v1/views/<name>`);
these commands fetch and print them: `--json` prints the rows themselves, otherwise an
aligned table, or an indented timeline for one session. The format_* functions are pure
(rows in, text out) so that what a reader sees is tested without a daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elsabro.cli.context import Context

Row = dict[str, Any]


def _duration(seconds: float | None) -> str:
    """81 ms, 12.3 s, 4m05s, 2h03m: short, and the unit always says how big."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _ms(millis: float | None) -> str:
    return _duration(None if millis is None else millis / 1000)


def _when(stamp: str | None, *, precise: bool = False) -> str:
    """A stored UTC time, shortened: `2026-11-24 14:26:38`, or `14:26:38.614` in a timeline."""
    if not stamp:
        return "-" if not precise else "?" * 12
    return stamp[11:23] if precise else stamp[:19].replace("T", " ")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns as wide as their widest cell; numbers (the `right` columns) aligned right."""
    widths = [max(len(cells[i]) for cells in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for cells in (headers, *rows):
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in pairs]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def format_sessions(rows: list[Row]) -> str:
    if not rows:
        return "no sessions recorded\n"
    cells = []
    for row in rows:
        tools: dict[str, int] = row.get("toolCalls") or {}
        busiest = sorted(tools.items(), key=lambda item: (-item[1], item[0]))
        cells.append(
            [
                row["sessionId"],
                _when(row.get("start")),
                _duration(row.get("durationS")) if row.get("end") else "no end",
                _cell(row.get("prompts")),
                str(sum(tools.values())),
                _cell(row.get("failures")),
                _cell(row.get("subagents")),
                ", ".join(f"{name} {count}" for name, count in busiest),
            ]
        )
    headers = ["SESSION", "START (UTC)", "DURATION", "PROMPTS", "TOOLS", "FAILED", "AGENTS", "CALLS"]
    return _table(headers, cells, right=(2, 3, 4, 5, 6))


def format_tasks(rows: list[Row]) -> str:
    if not rows:
        return "no tasks recorded\n"
    cells = [
        [
            (row.get("sessionId") or "-")[:8],
            _cell(row.get("taskId")),
            _cell(row.get("status")),
            _cell(row.get("subject")),
            " -> ".join(f"{h['status']} {_when(h.get('at'))[11:]}" for h in row.get("history") or []),
        ]
        for row in rows
    ]
    return _table(["SESSION", "TASK", "STATUS", "SUBJECT", "HISTORY (UTC)"], cells, right=(1,))


def format_agents(rows: list[Row]) -> str:
    if not rows:
        return "no subagents recorded\n"
    cells = [
        [
            _cell(row.get("agentType")),
            _cell(row.get("count")),
            _cell(row.get("completed")),
            _duration(row.get("p50S")),
            _duration(row.get("p95S")),
            _duration(row.get("totalS")),
        ]
        for row in rows
    ]
    return _table(["AGENT TYPE", "STARTED", "COMPLETED", "P50", "P95", "TOTAL"], cells, right=(1, 2, 3, 4, 5))


def format_stats(rows: list[Row]) -> str:
    if not rows:
        return "no tool calls recorded\n"
    cells = [
        [
            _cell(row.get("tool")),
            _cell(row.get("calls")),
            _cell(row.get("failures")),
            "-" if row.get("failureRate") is None else f"{row['failureRate']:.0%}",
            _ms(row.get("p50Ms")),
            _ms(row.get("p95Ms")),
        ]
        for row in rows
    ]
    return _table(["TOOL", "CALLS", "FAILURES", "FAIL RATE", "P50", "P95"], cells, right=(1, 2, 3, 4, 5))


def _timeline_line(entry: Row, depth: int) -> str:
    indent = "  " * depth
    if entry.get("kind") == "prompt":
        text = " ".join(str(entry.get("text") or "").split())
        return f"{_when(entry.get('at'), precise=True)}  {indent}prompt  {text[:100]}"
    start = _when(entry.get("start"), precise=True)
    if entry.get("kind") == "agent":
        agent = f"{entry.get('agentType') or 'agent'} ({entry.get('agentId')})"
        return f"{start}  {indent}subagent {agent}  {_ms(entry.get('durationMs'))}"
    status = {"ok": "ok", "failed": "FAILED"}.get(entry.get("status") or "", "no end")
    line = f"{start}  {indent}{entry.get('tool')!s:<12} {status:<6} {_ms(entry.get('durationMs')):>8}"
    error = str(entry.get("error") or "").strip().split("\n")[0][:100]
    summary = entry.get("summary") or ""
    return f"{line}  {summary}{'  error: ' + error if error else ''}".rstrip()


def format_timeline(entries: list[Row]) -> str:
    """One line per prompt, tool call and subagent (times UTC); a subagent's calls indented under it."""
    if not entries:
        return "no events for this session\n"
    lines = []
    for entry in entries:
        lines.append(_timeline_line(entry, 0))
        lines.extend(_timeline_line(child, 1) for child in entry.get("children") or [])
    return "\n".join(lines) + "\n"


_FORMATS: dict[str, Callable[[list[Row]], str]] = {
    "sessions": format_sessions,
    "session": format_timeline,
    "tasks": format_tasks,
    "agents": format_agents,
    "stats": format_stats,
}


def cmd_view(ctx: Context, args: argparse.Namespace) -> int:
    params = {"id": args.id} if args.view == "session" else None
    answer = ctx.with_daemon(lambda c: c.call_json("GET", f"/v1/views/{args.view}", params=params))
    rows: list[Row] = answer["rows"]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(_FORMATS[args.view](rows))
    return 0


def register(commands: Any) -> None:
    """Add these commands to the CLI's subparsers."""
    helps = {
        "sessions": "one line per Claude Code session: duration, prompts, tool calls, failures",
        "session": "the timeline of one session: prompts, tool calls, subagents and their calls",
        "tasks": "every task and its status history",
        "agents": "subagents per type: how many, how long",
        "stats": "per tool: calls, failures, p50 and p95 durations",
    }
    for name, text in helps.items():
        parser = commands.add_parser(name, help=text)
        if name == "session":
            parser.add_argument("id", help="the session id (the events' correlationId)")
        parser.add_argument("--json", action="store_true", help="the rows as JSON")
        parser.set_defaults(func=cmd_view, view=name)
