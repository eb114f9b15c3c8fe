"""What every group of the daemon's routes shares: finding the request's project, reading a
JSON object body, appending to a log whose directory may have been replaced.

The routes are split by what they serve (server.py: events in and out, views, the daemon
itself; delivery_routes.py: subscriptions, dead letters, webhooks, replay), each a class
over this one, so that no module has to hold them all.
"""

from __future__ import annotations

from typing import Any

from elsabro.core.errors import BadRequest, LogCorrupted, ProjectMoved
from elsabro.core.model import Event
from elsabro.daemon.http import Request
from elsabro.projects.project import Project, Projects

PROJECT_HEADER = "elsabro-project"
NDJSON = "application/x-ndjson"


class Routes:
    """The project a request names, found or opened in the daemon's registry."""

    def __init__(self, projects: Projects) -> None:
        self.projects = projects

    async def project(self, request: Request) -> Project:
        return await self.projects.get(request.headers.get(PROJECT_HEADER))

    async def existing(self, request: Request) -> Project | None:
        """The project for a read: None if it has no `.elsabro/` yet (a read creates nothing).

        A damaged log is an error, not an empty one: a log found damaged when the project
        opened has no readable end (the daemon knows no committed sequence), so its history
        would read as empty with no hint why.
        """
        project = await self.projects.find(request.headers.get(PROJECT_HEADER))
        return readable(project) if project is not None else None

    async def append(self, request: Request, project: Project, events: list[Event]) -> list[dict[str, Any]]:
        """Append to the project's log; if its directory was replaced meanwhile (nothing of the
        write reached the old files), once more into the directory there now."""
        try:
            return await project.log.append(events)
        except ProjectMoved:
            return await (await self.project(request)).log.append(events)


def readable(project: Project) -> Project:
    """The project, if its log can be read: a log found damaged says so and how to mend it."""
    failure = project.log.failure
    if isinstance(failure, LogCorrupted):
        raise LogCorrupted(f"cannot read the event log: {failure}")
    return project


def json_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
