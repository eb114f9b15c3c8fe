"""Redaction: values that look like secrets are replaced before anything is written.

Hook payloads carry commands, file contents and tool output, and with them API keys,
tokens and passwords. Every string of an event (payload, metadata, source, type, the
correlation and causation ids, and the keys of objects) is scanned, and each secret is
replaced by a marker naming its kind (`[REDACTED:github-token]`), so the log keeps its
shape and a reader still sees that something was there. Values under keys that name a
secret (`password`, `api_key`, `SecretAccessKey`...) are replaced whole, whatever they
are; a private key block split across a list of lines (a Write's `structuredPatch`) is
replaced line by line.

The same pass (`scrub`) cleans everything else elsabro writes or logs: dead letters, the
delivery log, the daemon's log, spool files and error messages.

The detectors (`detectors.py`) and a project's own patterns run on RE2, in time linear in
the text, and each event has a time budget: a field reached after the budget is spent is
replaced whole (`[REDACTED:budget]`), so no input can stall the daemon.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2

from elsabro.core.redact.detectors import DETECTORS, NOT_SECRETS, PEM_BEGIN, PEM_END, Detector, compile_linear

__all__ = [
    "Rules",
    "check_linear_pattern",
    "marker",
    "redact_event",
    "redact_text",
    "redact_value",
    "scrub",
    "scrub_value",
]

# Keys whose whole value is a secret, whatever it looks like (a string, a list, an object).
# Keys are short; the expression is anchored at the end, so a long key costs one pass.
SECRET_KEYS = re.compile(
    r"(?i)(?:password|passwd|passphrase|secret|token|api[_\-]?key|apikey|private[_\-]?key|access[_\-]?key"
    r"|authorization|cookie|credentials)\Z"
)
# Fields of an event that are never redacted: they identify and order it.
_STRUCTURAL = frozenset({"id", "timestamp", "topic", "sequence", "storedAt", "prevHash", "batchLast"})
DEFAULT_BUDGET_MS = 200.0


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


BUDGET_MARKER = marker("budget")


def check_linear_pattern(expression: str) -> None:
    """Raise ValueError, in one line, for a project pattern that cannot run in linear time."""
    try:
        compile_linear(expression)
    except re2.error as exc:
        reason = str(exc.args[0] if exc.args else exc)
        if reason.startswith("b'") or reason.startswith('b"'):
            reason = reason[2:-1]
        raise ValueError(
            f"regex not supported (patterns must run in linear time, RE2 syntax): {reason}"
        ) from None


@dataclass(frozen=True)
class Rules:
    """What to redact: the built-in detectors plus a project's own rules."""

    enabled: bool = True
    patterns: tuple[tuple[str, str], ...] = ()  # (kind, regex) added by the project
    drop_paths: tuple[str, ...] = ()  # dotted paths into the event, removed
    hash_paths: tuple[str, ...] = ()  # dotted paths into the event, replaced by sha256:<hex>
    max_field_chars: int | None = 1024 * 1024  # longer strings are cut, with their size and hash noted
    budget_ms: float | None = DEFAULT_BUDGET_MS  # per event; fields past it are replaced whole


_CACHE: dict[tuple[tuple[str, str], ...], list[Detector]] = {}


def _project_patterns(extra: tuple[tuple[str, str], ...]) -> list[Detector]:
    """A project's own detectors, compiled once; they have no triggers, so they always run.
    A pattern RE2 refuses (checked at config load) is skipped rather than run unsafely."""
    if extra not in _CACHE:
        compiled = []
        for kind, expression in extra:
            try:
                compiled.append(Detector(kind, ("",), compile_linear(expression)))
            except re2.error:
                continue
        _CACHE[extra] = compiled
    return _CACHE[extra]


class _Budget:
    """The time one event may take; past it, every field left is replaced whole."""

    def __init__(self, budget_ms: float | None) -> None:
        self.deadline = None if budget_ms is None else time.monotonic() + budget_ms / 1000

    def over(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


_NO_BUDGET = _Budget(None)


# Which detectors a text calls for, in one pass of RE2 over it: the set of triggers it holds
# (anywhere, overlapping or not). Most strings (paths, ids, ordinary output) hold none.
_TRIGGERS = sorted({t for d in DETECTORS for t in d.triggers})
_TRIGGER_OPTIONS = re2.Options()
_TRIGGER_OPTIONS.case_sensitive = False
_TRIGGER_SET = re2.Set.SearchSet(_TRIGGER_OPTIONS)
for _trigger in _TRIGGERS:
    _TRIGGER_SET.Add(re.escape(_trigger))
_TRIGGER_SET.Compile()
_CALLED_FOR = [frozenset(i for i, d in enumerate(DETECTORS) if t in d.triggers) for t in _TRIGGERS]


def _called_for(text: str) -> list[Detector]:
    found = _TRIGGER_SET.Match(text)
    if not found:
        return []
    indices = frozenset().union(*(_CALLED_FOR[t] for t in found))
    return [d for i, d in enumerate(DETECTORS) if i in indices]


def redact_text(text: str, rules: Rules, budget: _Budget = _NO_BUDGET) -> str:
    try:
        detectors = _called_for(text)
    except UnicodeEncodeError:  # lone surrogates (JSON `\\ud800`, a raw header): RE2 reads UTF-8 only
        escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
        detectors = _called_for(escaped)
        if not detectors and not rules.patterns:
            return text  # nothing to look for: kept as it came
        text = escaped
    if rules.patterns:
        detectors += _project_patterns(rules.patterns)
    for detector in detectors:
        if budget.over():
            return BUDGET_MARKER
        text = detector.expression.sub(_replacer(detector), text)
    return text


_REPLACERS: dict[str, Any] = {}


def _replacer(detector: Detector) -> Any:
    """The replacement for a detector's match: a plain marker, or the kept parts around it."""
    if detector.kind in _REPLACERS:
        return _REPLACERS[detector.kind]
    if "v" not in detector.expression.groupindex:
        return marker(detector.kind)
    mark = marker(detector.kind)

    def replace(match: Any) -> str:
        value: str = match.group("v")
        # A count (`"total_tokens": 1234`) is no secret; neither is a name or an earlier marker.
        if value.isdigit() or value.lower() in NOT_SECRETS or value.startswith("[REDACTED"):
            return str(match.group(0))
        tail = match.group("t") if "t" in detector.expression.groupindex else ""
        return f"{match.group('k')}{mark}{tail}"

    if detector in DETECTORS:
        _REPLACERS[detector.kind] = replace
    return replace


def redact_value(value: Any, rules: Rules, budget: _Budget = _NO_BUDGET) -> Any:
    """The value with every secret replaced (a new object; the original is not changed)."""
    if isinstance(value, str):
        if budget.over():
            return BUDGET_MARKER
        text = redact_text(value, rules, budget) if len(value) >= 8 else value
        return _truncated(value, text, rules.max_field_chars)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = _redacted_key(key, rules, budget, out)
            out[name] = (
                marker("secret-field") if _secret_key(key, item) else redact_value(item, rules, budget)
            )
        return out
    if isinstance(value, list):
        return _redacted_list(value, rules, budget)
    return value


def _redacted_key(key: Any, rules: Rules, budget: _Budget, taken: dict[Any, Any]) -> Any:
    """An object's key, redacted like any string (a token can be a key); distinct keys stay
    distinct."""
    if not isinstance(key, str) or len(key) < 8:
        return key
    name = redact_text(key, rules, budget)
    if name == key:
        return key
    unique, count = name, 1
    while unique in taken:
        count += 1
        unique = f"{name}#{count}"
    return unique


def _redacted_list(items: list[Any], rules: Rules, budget: _Budget) -> list[Any]:
    """Items redacted one by one, and the lines of a private key block split across items
    (a Write's `structuredPatch`, a file read as lines) replaced from BEGIN to END."""
    out: list[Any] = []
    inside = False
    for item in items:
        if isinstance(item, str) and (inside or "private key" in item.lower()):
            if inside:
                inside = PEM_END.search(item) is None
                out.append(marker("private-key"))
                continue
            begin = PEM_BEGIN.search(item)
            inside = begin is not None and PEM_END.search(item, begin.end()) is None
        out.append(redact_value(item, rules, budget))
    return out


def _truncated(original: str, text: str, limit: int | None) -> str:
    """A field over the limit (a Write of a large file, a huge tool output) is cut, and the cut
    says how long the original was and its SHA-256, so one event cannot swell the log."""
    if limit is None or len(text) <= limit:
        return text
    data = original.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(data).hexdigest()
    return f"{text[:limit]}[TRUNCATED: {len(data)} bytes, sha256:{digest}]"


def _cut(value: Any, limit: int | None) -> Any:
    if isinstance(value, str):
        return _truncated(value, value, limit)
    if isinstance(value, dict):
        return {key: _cut(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, limit) for item in value]
    return value


def _secret_key(key: Any, item: Any) -> bool:
    if not isinstance(key, str) or item is None or isinstance(item, bool) or item in ("", [], {}):
        return False
    return SECRET_KEYS.search(key) is not None


def redact_event(record: dict[str, Any], rules: Rules) -> dict[str, Any]:
    """An event (wire form) with every field but its identity redacted, and the project's
    paths applied."""
    if not rules.enabled:  # no redaction, but the size limit still holds
        limit = rules.max_field_chars
        return {
            **record,
            "payload": _cut(record.get("payload"), limit),
            "metadata": _cut(record.get("metadata"), limit),
        }
    budget = _Budget(rules.budget_ms)
    result = {
        key: value if key in _STRUCTURAL else redact_value(value, rules, budget)
        for key, value in record.items()
    }
    for path in rules.drop_paths:
        _apply(result, path.split("."), lambda _: None, drop=True)
    for path in rules.hash_paths:
        _apply(result, path.split("."), _hashed, drop=False)
    return result


_DEFAULT = Rules(max_field_chars=None)


def scrub(text: str, rules: Rules | None = None) -> str:
    """Text that leaves elsabro (a log line, an error message, a handler's output) with its
    secrets replaced, within the time budget."""
    return redact_text(text, rules or _DEFAULT, _Budget((rules or _DEFAULT).budget_ms))


def scrub_value(value: Any, rules: Rules | None = None) -> Any:
    """A JSON value that leaves elsabro (a dead letter, a delivery record) with its secrets
    replaced, within the time budget."""
    return redact_value(value, rules or _DEFAULT, _Budget((rules or _DEFAULT).budget_ms))


def _hashed(value: Any) -> str:
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()


def _apply(node: Any, path: Iterable[str], change: Any, *, drop: bool) -> None:
    parts = list(path)
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node[part] = dict(node[part]) if isinstance(node[part], dict) else node[part]
        node = node[part]
    if isinstance(node, dict) and parts and parts[-1] in node:
        if drop:
            del node[parts[-1]]
        else:
            node[parts[-1]] = change(node[parts[-1]])
