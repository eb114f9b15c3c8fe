"""The results: one JSON file for machines, one Markdown table for people."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common import Figure


def number(value: float) -> str:
    """A value with as many digits as a noisy measurement deserves."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(figures: list[Figure], not_yet: list[dict[str, str]], notes: list[str]) -> str:
    rows = [
        "| figure | median | min | max | unit | target | met? |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for figure in figures:
        data = figure.to_json()
        met = "-" if data["met"] is None else ("yes" if data["met"] else "**no**")
        rows.append(
            f"| {figure.name} | {number(data['median'])} | {number(data['min'])} | {number(data['max'])} "
            f"| {figure.unit} | {data['target'] or '-'} | {met} |"
        )
    lines = [*rows, ""]
    lines.append("Notes:")
    lines.extend(f"- {figure.name}: {figure.note} (runs: {len(figure.samples)})" for figure in figures)
    lines.extend(f"- {note}" for note in notes)
    lines.append("")
    lines.append("Not yet measurable (nothing to measure yet; no numbers are reported for these):")
    lines.extend(f"- {item['name']}: {item['why']}" for item in not_yet)
    return "\n".join(lines) + "\n"


def write_json(
    path: Path,
    figures: list[Figure],
    not_yet: list[dict[str, str]],
    notes: list[str],
    meta: dict[str, Any],
) -> None:
    """Write atomically: a reader never sees half a results file."""
    document = {
        "meta": meta,
        "figures": {figure.name: figure.to_json() for figure in figures},
        "not_yet_measurable": not_yet,
        "notes": notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(temporary, path)
