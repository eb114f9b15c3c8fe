"""How stored records are written out: `history`, `tail` and `export` formats, CloudEvents.

    table        one aligned line per event, for reading (the default on a terminal)
    jsonl        one stored record per line, exactly as stored
    json         one JSON array of the stored records
    csv          one row per event; payload and metadata as JSON text
    cloudevents  one JSON array of CloudEvents 1.0 structured-mode events (a batch,
                 `application/cloudevents-batch+json`), the webhooks' `cloudevents` shape

Every writer streams: a million-event export never holds more than one record.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from elsabro.core.cloudevents import cloudevent

FORMATS = ("table", "jsonl", "json", "csv", "cloudevents")
CSV_COLUMNS = (
    "sequence",
    "id",
    "timestamp",
    "topic",
    "type",
    "source",
    "correlationId",
    "causationId",
    "payload",
    "metadata",
)
_TABLE_PAYLOAD_CHARS = 80


def table_row(record: dict[str, Any]) -> str:
    session = (record.get("correlationId") or "-")[:8]
    payload = json.dumps(record.get("payload"), ensure_ascii=False)
    if len(payload) > _TABLE_PAYLOAD_CHARS:
        payload = payload[: _TABLE_PAYLOAD_CHARS - 3] + "..."
    return f"{record['sequence']:>7}  {record['timestamp']}  {record['topic']:<30} {session:<8}  {payload}\n"


def _csv_row(record: dict[str, Any]) -> str:
    out = io.StringIO()
    cells = [record.get(column) for column in CSV_COLUMNS]
    cells[-2:] = [json.dumps(value, ensure_ascii=False) for value in cells[-2:]]
    csv.writer(out, lineterminator="\n").writerow(["" if cell is None else cell for cell in cells])
    return out.getvalue()


def _array(items: Iterable[str]) -> Iterator[str]:
    """A JSON array written one element per line."""
    opened = False
    for item in items:
        yield ("[\n" if not opened else ",\n") + item
        opened = True
    yield "\n]\n" if opened else "[]\n"


def write(lines: Iterable[bytes], fmt: str) -> Iterator[str]:
    """The text of `lines` (stored records, JSON) in a format, piece by piece."""
    if fmt == "jsonl":
        return (line.decode("utf-8", "replace") + "\n" for line in lines)
    if fmt == "json":
        return _array(line.decode("utf-8", "replace") for line in lines)
    if fmt == "cloudevents":
        return _array(json.dumps(cloudevent(json.loads(line)), ensure_ascii=False) for line in lines)
    if fmt == "csv":
        header = ",".join(CSV_COLUMNS) + "\n"
        return itertools.chain([header], (_csv_row(json.loads(line)) for line in lines))
    return (table_row(json.loads(line)) for line in lines)
