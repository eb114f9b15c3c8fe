"""A webhook endpoint as a member of its own durable consumer (see dispatch.py).

Delivery order, retries with the endpoint's backoff, Retry-After, 410 Gone disabling
the endpoint, and dead letters once the attempts run out; one attempt is webhooks.send.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from elsabro.config.edit import update_endpoint
from elsabro.config.schema import Options, ProjectConfig, WebhookEndpoint, WebhooksConfig
from elsabro.core.errors import HandlerError
from elsabro.delivery.context import Clients, ProjectContext
from elsabro.delivery.members import Member
from elsabro.delivery.webhooks import backoff_s, endpoint_wants, safe_url, send

log = logging.getLogger("elsabro.webhooks")

# Members of an endpoint that delivers in parallel (`parallel: true`), giving up log order.
PARALLEL_MEMBERS = 4


class EndpointMember(Member):
    """A webhook endpoint inside the dispatcher: delivers, retries, gives up, or is disabled."""

    def __init__(
        self, endpoint: WebhookEndpoint, config: WebhooksConfig, client: Clients, index: int = 0
    ) -> None:
        spec = (endpoint, config.signing, config.retry, index)
        super().__init__(f"webhook:{endpoint.id}", spec, Options(durable=True, timeout=endpoint.timeout))
        self.endpoint = endpoint
        self.config = config
        self.clients = client
        self.disabled = not endpoint.enabled

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "selector": ",".join(self.endpoint.events),
            "queue": None,
            "url": safe_url(self.endpoint.url),
            "disabled": self.disabled,
        }

    def wants(self, record: dict[str, Any]) -> bool:
        return not self.disabled and endpoint_wants(self.endpoint.events, record["topic"])

    async def run_handler(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        outcome = await send(self.clients.get(), project.path, self.endpoint, self.config, record, number)
        if not outcome.ok:
            raise HandlerError(outcome.error or "failed")

    async def deliver(self, project: ProjectContext, record: dict[str, Any]) -> None:
        attempts = self.config.retry.max_attempts
        for number in range(1, attempts + 1):
            outcome = await send(self.clients.get(), project.path, self.endpoint, self.config, record, number)
            if outcome.ok:
                self.succeeded()
                return
            self.failed(record, outcome.error or "failed", number)
            if outcome.gone:
                self.disabled = True
                log.error("webhook %s answered 410 Gone: endpoint disabled", self.endpoint.id)
                await disable_endpoint(project, self.endpoint.id)
                break
            if number < attempts:
                wait_s = outcome.retry_after_s
                await asyncio.sleep(wait_s if wait_s is not None else backoff_s(self.config, number))
        await self.park(project, record, HandlerError(self.last_error or "failed"), retry_count=number - 1)


def endpoint_groups(config: ProjectConfig, clients: Clients) -> dict[str, list[Member]]:
    """One consumer per enabled endpoint (several members when it delivers in parallel)."""
    webhooks = config.events.webhooks
    if not (config.events.enabled and webhooks.enabled):
        return {}
    groups: dict[str, list[Member]] = {}
    for endpoint in webhooks.endpoints:
        if endpoint.enabled:
            count = PARALLEL_MEMBERS if endpoint.parallel else 1
            groups[f"webhook:{endpoint.id}"] = [
                EndpointMember(endpoint, webhooks, clients, i) for i in range(count)
            ]
    return groups


async def disable_endpoint(project: ProjectContext, endpoint_id: str) -> None:
    """Persist `enabled: false` for an endpoint of the project's config, and say so in the log."""
    try:
        # elsabro's own edit: a trusted config stays trusted (config/edit.py).
        state_dir = project.settings.state_dir
        await asyncio.to_thread(
            update_endpoint, project.path, endpoint_id, {"enabled": False}, None, state_dir
        )
    except Exception as exc:  # the endpoint may live in the user's config: it stays disabled in memory
        log.warning("could not write enabled: false for webhook %s: %s", endpoint_id, exc)
