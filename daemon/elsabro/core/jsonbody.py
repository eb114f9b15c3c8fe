"""JSON bodies every part of elsabro can handle: the checks a request and a spooled hook
file both pass before anything else sees them."""

from __future__ import annotations

import json
import re
from typing import Any

from elsabro.core.errors import BadRequest

# Values in one body, when the caller names no limit (the default of Settings.max_json_nodes).
MAX_JSON_NODES = 250_000


def parse_json(body: bytes, max_nodes: int = MAX_JSON_NODES) -> Any:
    """JSON that every part of elsabro can handle, or BadRequest saying what is wrong with it
    (also for spooled hook files: they must pass the same checks as a request)."""
    _check_nodes(body, max_nodes)  # before parsing: the parse itself is what costs the memory
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
        # json.loads decodes bytes with "surrogatepass" and keeps `\ud800`-style escapes, so
        # a lone surrogate (encoded, b"\xed\xa0\x80", or escaped) got through, and no UTF-8
        # writer can write it back: on "\ud800" the log's writer died (every later publish
        # to the project hung); "\udcff" went to disk as a raw 0xff byte and the log read as
        # corrupted after a restart. Only a body with a \u escape, an 0xed byte or NULs (a
        # UTF-16/32 body) can hold one: the others are not checked again.
        if b"\\u" in body or b"\xed" in body or b"\x00" in body:
            json.dumps(value, ensure_ascii=False).encode()
        if isinstance(value, (dict, list)):
            _check_depth(body, value)
        return value
    except UnicodeError:  # UnicodeDecodeError, and the UnicodeEncodeError above
        raise BadRequest("body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


# A JSON string, escapes included: its commas and brackets are text, not structure. Unrolled
# (no alternation repeated per character), so it runs in C at a few hundred MB/s.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _check_nodes(body: bytes, max_nodes: int) -> None:
    """Refuse a body with more than `max_nodes` values (objects, arrays and scalars).

    The values of a document number at most 1 + its `[`, `{` and `,` (each container adds
    one value per comma plus one, none when empty). That bound costs three counts over the
    bytes and settles nearly every body; only one near the limit is counted exactly, without
    its strings and whitespace.
    """
    if body.count(b"[") + body.count(b"{") + body.count(b",") < max_nodes:
        return
    structure = _STRING.sub(b"", body).translate(None, b" \t\r\n")
    empty = structure.count(b"[]") + structure.count(b"{}")
    nodes = 1 + structure.count(b"[") + structure.count(b"{") + structure.count(b",") - empty
    if nodes > max_nodes:
        raise BadRequest(
            f"JSON with {nodes} values is over the limit of {max_nodes} (ELSABRO_MAX_JSON_NODES)"
        )


# Deeper JSON is refused: every consumer of an event (redaction, filters, handlers) walks it
# recursively. Hook payloads nest a handful of levels.
MAX_JSON_DEPTH = 100


def _check_depth(body: bytes, value: Any) -> None:
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return  # cannot be that deep: the common case costs two counts
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: the point is not to recurse on what may be very deep
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value
