"""What delivery needs of an open project, as an interface: projects.Project provides it.

Delivery sits below the project that wires it up, so it names only these things:
where the project is, its log (to read from and to publish derived events to), its
current config, the HTTP client its webhooks share, and the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from elsabro.config.schema import ProjectConfig
from elsabro.core.settings import Settings
from elsabro.store.log import ProjectLog

if TYPE_CHECKING:
    import httpx


class ProjectContext(Protocol):
    path: Path
    log: ProjectLog
    config: ProjectConfig
    clients: Clients
    settings: Settings  # the user's: where the record of trusted configs is (a 410 Gone edits one)


class Clients:
    """One httpx client per project (connection reuse), made on first use: httpx is imported
    only by a daemon that delivers webhooks."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
