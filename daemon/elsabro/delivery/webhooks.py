"""Webhooks: signed, retried, durable deliveries of events to HTTP endpoints, with a delivery log.

Each enabled endpoint of `events.webhooks` is a durable consumer of the project's log
(dispatch.py, members.py): pending deliveries survive a restart because the endpoint's cursor only
moves past an event once it is delivered or dead-lettered, and an endpoint receives
events in log order unless it opts into `parallel`.

Formats, per endpoint:
  elsabro      the seed's body `{"event": type, "timestamp", "data": payload}`, HMAC hex of
               the body (`signing.algorithm`) in `signing.header` (X-Webhook-Signature)
  standard     Standard Webhooks: `webhook-id` (the event id, the same on every retry),
               `webhook-timestamp`, `webhook-signature: v1,<base64>` over id.timestamp.body,
               one signature per secret during a rotation (`whsec_` secrets)
  cloudevents  a structured-mode CloudEvents 1.0 JSON body, `application/cloudevents+json`

Only 2xx is success; redirects are not followed; 410 Gone disables the endpoint; 429 and
503 wait for Retry-After; other failures wait the configured backoff (linear or
exponential from `initialDelay`, +-20% jitter, capped by `maxDelay`). After `maxAttempts`
the event is dead-lettered and `event.handler.failed` is published. Every attempt is a
line of `.elsabro/deliveries.jsonl`; secrets never appear there or in the daemon's log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from elsabro.config.schema import WebhookEndpoint, WebhooksConfig
from elsabro.core import durable
from elsabro.core.clock import now_iso
from elsabro.core.cloudevents import cloudevent
from elsabro.core.errors import ConfigError
from elsabro.core.redact import marker, scrub
from elsabro.core.topics import matches
from elsabro.delivery.context import ProjectContext

if TYPE_CHECKING:
    import httpx


log = logging.getLogger("elsabro.webhooks")

DELIVERIES = Path(".elsabro") / "deliveries.jsonl"
RESPONSE_EXCERPT_BYTES = 4096
MAX_RETRY_AFTER_S = 3600.0


def endpoint_wants(patterns: list[str], topic: str) -> bool:
    """The seed's topic list: `*` is every topic, `prefix.*` everything under prefix; else a pattern."""
    for pattern in patterns:
        if (
            pattern == "*"
            or (pattern.endswith(".*") and topic.startswith(pattern[:-1]))
            or matches(pattern, topic)
        ):
            return True
    return False


def delivery_id(record: dict[str, Any], endpoint_id: str) -> str:
    return f"dlv_{record['id'].removeprefix('evt_')}.{endpoint_id}"


# -- rendering -------------------------------------------------------------------------


REPLAY_HEADER = "elsabro-replay"


def render(
    endpoint: WebhookEndpoint, config: WebhooksConfig, record: dict[str, Any], project: Path | None = None
) -> tuple[dict[str, str], bytes]:
    """The headers and body of one attempt in the endpoint's format; secret references are
    read now (ConfigError, one line, if one cannot be)."""
    secrets = endpoint.secrets(project)
    if endpoint.format == "cloudevents":
        headers, body = {"content-type": "application/cloudevents+json"}, _dumps(cloudevent(record))
    else:
        seed = {"event": record["type"], "timestamp": record["timestamp"], "data": record.get("payload")}
        if endpoint.format == "standard":
            seed = {"type": record["type"], "timestamp": record["timestamp"], "data": record.get("payload")}
        headers, body = {"content-type": "application/json"}, _dumps(seed)
    headers = {**{k.lower(): v for k, v in endpoint.resolved_headers(project).items()}, **headers}
    if (record.get("metadata") or {}).get("replay") is True:
        headers[REPLAY_HEADER] = "true"  # the seed's body has no metadata: say it in a header
    if endpoint.format == "standard":
        headers.update(standard_headers(record["id"], int(time.time()), body, secrets))
    elif config.signing.enabled and secrets:
        digest = hmac.new(secrets[0].encode(), body, config.signing.algorithm).hexdigest()
        headers[config.signing.header.lower()] = digest
    return headers, body


def standard_headers(message_id: str, timestamp_s: int, body: bytes, secrets: list[str]) -> dict[str, str]:
    """Standard Webhooks headers: one `v1,` signature per secret (several during a rotation)."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signatures.append("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode())
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp_s)}
    if signatures:
        headers["webhook-signature"] = " ".join(signatures)
    return headers


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def safe_url(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- one attempt -----------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    retry_after_s: float | None = None

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        return None


async def send(
    client: httpx.AsyncClient,
    project: Path,
    endpoint: WebhookEndpoint,
    config: WebhooksConfig,
    record: dict[str, Any],
    attempt: int,
    *,
    replay: bool = False,
) -> Outcome:
    """POST one event to one endpoint once, and write the attempt to the delivery log."""
    import httpx

    started = time.monotonic()
    excerpt = ""
    headers: dict[str, str] = {}
    try:
        headers, body = render(endpoint, config, record, project)
        response = await client.post(
            endpoint.url, content=body, headers=headers, timeout=endpoint.timeout / 1000
        )
        excerpt = response.content[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")
        ok = 200 <= response.status_code < 300
        outcome = Outcome(ok, response.status_code, None if ok else f"HTTP {response.status_code}")
        if response.status_code in (429, 503):
            outcome.retry_after_s = _retry_after(response.headers.get("retry-after"))
    except ConfigError as exc:  # a secret reference that cannot be read: this endpoint fails
        outcome = Outcome(False, None, str(exc))
    except httpx.TimeoutException:
        outcome = Outcome(False, None, f"timed out after {endpoint.timeout / 1000:g} s")
    except httpx.HTTPError as exc:
        outcome = Outcome(
            False, None, f"{type(exc).__name__}: {exc}".replace(endpoint.url, safe_url(endpoint.url))
        )
    entry = {
        "deliveryId": delivery_id(record, endpoint.id),
        "endpoint": endpoint.id,
        "eventId": record["id"],
        "topic": record["topic"],
        "attempt": attempt,
        "time": now_iso(),
        "statusCode": outcome.status_code,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
        # A receiver may echo the request, its Authorization and signature included.
        "error": None if outcome.error is None else _scrubbed(outcome.error, headers),
        "response": _scrubbed(excerpt, headers),
        "replay": replay,
        "status": "success" if outcome.ok else "failed",
    }
    await asyncio.to_thread(durable.append, project / DELIVERIES, _dumps(entry) + b"\n")
    return outcome


def _scrubbed(text: str, headers: dict[str, str]) -> str:
    """Text about an attempt without the values of the headers sent (the endpoint's own
    secrets, whatever they look like) nor anything else that looks like a secret."""
    for name, value in headers.items():
        if name in ("content-type", "webhook-id", "webhook-timestamp", REPLAY_HEADER):
            continue
        if len(value) >= 4:
            text = text.replace(value, marker("webhook-secret"))
    return scrub(text)


def backoff_s(config: WebhooksConfig, attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based): the configured backoff with jitter, capped."""
    retry = config.retry
    base_ms = retry.initial_delay * (attempt if retry.backoff == "linear" else 2 ** (attempt - 1))
    return min(base_ms * random.uniform(0.8, 1.2), retry.max_delay) / 1000


# -- the delivery log, and sending again -----------------------------------------------


def attempts(project: Path) -> list[dict[str, Any]]:
    """Every attempt in the delivery log, oldest first."""
    try:
        lines = (project / DELIVERIES).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def deliveries(
    project: Path, endpoint: str | None = None, status: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """One row per delivery (event x endpoint): its latest attempt, and how many there were."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in attempts(project):
        count = latest.get(entry["deliveryId"], {}).get("attempts", 0) + 1
        latest[entry["deliveryId"]] = {**entry, "attempts": count}
    rows = list(latest.values())
    return [
        row
        for row in rows
        if (endpoint is None or row["endpoint"] == endpoint)
        and (status is None or row["status"] == status)
        and (since is None or row["time"] >= since)
    ]


async def resend(project: ProjectContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send these deliveries once more (as the seed's retryDelivery), while their events are in the log."""
    config = project.config.events.webhooks
    wanted = {row["eventId"] for row in rows}
    found = await asyncio.to_thread(_find_events, project, wanted)  # one pass over the log for all
    results = []
    for row in rows:
        endpoint = config.endpoint(row["endpoint"])
        record = found.get(row["eventId"])
        if endpoint is None or record is None:
            why = "its endpoint is gone" if endpoint is None else "its event is no longer in the log"
            results.append({"deliveryId": row["deliveryId"], "ok": False, "error": why})
            continue
        client = project.clients.get()
        outcome = await send(client, project.path, endpoint, config, record, row["attempts"] + 1, replay=True)
        results.append({"deliveryId": row["deliveryId"], "ok": outcome.ok, "error": outcome.error})
    return results


def _find_events(project: ProjectContext, event_ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, line in project.log.read():
        if any(event_id.encode() in line for event_id in event_ids):  # cheap test before parsing
            record = json.loads(line)
            if record["id"] in event_ids:
                found[record["id"]] = record
                if len(found) == len(event_ids):
                    break
    return found
