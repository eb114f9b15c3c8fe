"""Redaction: values that look like secrets are replaced before an event is stored.

Hook payloads carry commands, file contents and tool output, and with them API keys,
tokens and passwords. Every string in an event's payload and metadata is scanned, and
each secret is replaced by a marker naming its kind (`[REDACTED:github-token]`), so the
log keeps its shape and a reader still sees that something was there. Values under keys
that name a secret (`password`, `api_key`, `token`...) are replaced whole.

The detectors are regular expressions for the formats providers document (prefixes and
lengths), each run only on text containing one of its literal triggers, so a large tool
output with nothing secret in it costs a few substring searches. This list is ours rather
than a scanner library's: those scan files line by line and report findings, while the
daemon needs spans to replace inside every string of every event, fast. Projects add
their own patterns, and fields to drop or to replace by a hash, in the `redaction` block
of their config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# (kind, triggers, expression). A detector runs only on text that contains one of its
# triggers (lower-cased literals): a large tool output with no trigger costs a few substring
# searches instead of a regex pass per detector. Earlier detectors run first.
DETECTORS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "private-key",
        ("private key-----",),
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    ),
    ("anthropic-key", ("sk-ant-",), r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", ("sk-",), r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("github-token", ("gh", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab-token", ("glpat-",), r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("slack-token", ("xox",), r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("slack-webhook", ("hooks.slack.com",), r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
    ("aws-access-key", ("akia", "asia", "abia", "acca"), r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("google-api-key", ("aiza",), r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("jwt", ("eyj",), r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("bearer-token", ("bearer ",), r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/\-]{16,}=*"),
    ("basic-auth", ("basic ",), r"(?i)(?<=\bbasic )[A-Za-z0-9+/]{12,}=*"),
    ("url-password", ("://",), r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    (
        "secret-assignment",
        ("secret", "token", "password", "passwd", "key"),
        r"(?i)\b[A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY)"
        r"[A-Z0-9_]*\s*[=:]\s*(?!\[REDACTED)[\"']?[^\s\"'#]{6,}",
    ),
]
_COMPILED = [(kind, triggers, re.compile(expression)) for kind, triggers, expression in DETECTORS]
# Keys whose whole value is a secret, whatever it looks like.
SECRET_KEYS = re.compile(r"(?i)^(?:.*[_\-])?(?:password|passwd|secret|token|api[_\-]?key|private[_\-]?key)$")


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Rules:
    """What to redact: the built-in detectors plus a project's own rules."""

    enabled: bool = True
    patterns: tuple[tuple[str, str], ...] = ()  # (kind, regex) added by the project
    drop_paths: tuple[str, ...] = ()  # dotted paths into the event, removed
    hash_paths: tuple[str, ...] = ()  # dotted paths into the event, replaced by sha256:<hex>
    max_field_chars: int | None = 1024 * 1024  # longer strings are cut, with their size and hash noted

    def detectors(self) -> list[tuple[str, tuple[str, ...], re.Pattern[str]]]:
        return [*_COMPILED, *_project_patterns(self.patterns)]


_CACHE: dict[tuple[tuple[str, str], ...], list[tuple[str, tuple[str, ...], re.Pattern[str]]]] = {}


def _project_patterns(
    extra: tuple[tuple[str, str], ...],
) -> list[tuple[str, tuple[str, ...], re.Pattern[str]]]:
    """A project's own detectors, compiled once; they have no triggers, so they always run."""
    if extra not in _CACHE:
        _CACHE[extra] = [(kind, ("",), re.compile(expression)) for kind, expression in extra]
    return _CACHE[extra]


def redact_text(text: str, rules: Rules) -> str:
    lowered = text.lower()
    for kind, triggers, expression in rules.detectors():
        if not any(trigger in lowered for trigger in triggers):
            continue
        if kind == "secret-assignment":  # keep the name, hide the value
            text = expression.sub(_keep_name, text)
        else:
            text = expression.sub(marker(kind), text)
    return text


_NAME_PART = re.compile(r"[^=:]*[=:]\s*[\"']?")


def _keep_name(match: re.Match[str]) -> str:
    name = _NAME_PART.match(match.group(0))
    return (name.group(0) if name else "") + marker("secret-assignment")


def redact_value(value: Any, rules: Rules) -> Any:
    """The value with every secret replaced (a new object; the original is not changed)."""
    if isinstance(value, str):
        text = redact_text(value, rules) if len(value) >= 8 else value
        return _truncated(value, text, rules.max_field_chars)
    if isinstance(value, dict):
        return {
            key: (marker("secret-field") if _secret_key(key, item) else redact_value(item, rules))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_value(item, rules) for item in value]
    return value


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
    return (
        isinstance(key, str) and isinstance(item, (str, int)) and item != "" and bool(SECRET_KEYS.match(key))
    )


def redact_event(record: dict[str, Any], rules: Rules) -> dict[str, Any]:
    """An event (wire form) with payload and metadata redacted and the project's paths applied."""
    if not rules.enabled:  # no redaction, but the size limit still holds
        limit = rules.max_field_chars
        return {
            **record,
            "payload": _cut(record.get("payload"), limit),
            "metadata": _cut(record.get("metadata"), limit),
        }
    result = dict(record)
    for key in ("payload", "metadata"):
        result[key] = redact_value(record.get(key), rules)
    for path in rules.drop_paths:
        _apply(result, path.split("."), lambda _: None, drop=True)
    for path in rules.hash_paths:
        _apply(result, path.split("."), _hashed, drop=False)
    return result


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
