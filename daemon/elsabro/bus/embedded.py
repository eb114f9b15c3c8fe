"""The EventBus inside one process, with no daemon: the daemon's own parts, run in place.

An embedded bus opens the project like the daemon does (projects/project.py): the writer's lock,
the log on the chosen store (`memory`, `file` or `sqlite`), group commit and fsync, the
dispatcher with its cursors and dead letters. Python subscribers are dispatcher members
whose attempts call the handler directly. With a project directory, that project's
`.elsabro/config.json` applies too: redaction, and its subscriptions and webhooks run
here, since no daemon serves the project while this bus holds its log.

Without a directory (`store="memory"`), the cursors and dead letters live in a private
temporary directory that `close` removes: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from elsabro.bus.subscriber import Subscriber
from elsabro.config import trust
from elsabro.core.errors import UsageError
from elsabro.core.model import PublishRequest
from elsabro.core.settings import Settings
from elsabro.delivery.context import ProjectContext
from elsabro.delivery.deadletters import DeadLetters
from elsabro.delivery.members import Member
from elsabro.projects.project import Project
from elsabro.store.backends import open_store
from elsabro.store.query import Query

log = logging.getLogger("elsabro.bus")

STORES = ("memory", "file", "sqlite")


class FunctionMember(Member):
    """A Python subscriber of an embedded bus: an attempt calls its handler."""

    def __init__(self, subscriber: Subscriber) -> None:
        selection = subscriber.selection
        super().__init__(selection.name, subscriber, selection.options, selection.selector, selection.filter)
        self.subscriber = subscriber

    async def run_handler(self, project: ProjectContext, record: dict[str, Any], number: int) -> None:
        # A copy: consumers share one parsed record, and a handler may change what it is given.
        await self.subscriber.handle(copy.deepcopy(record))


class EmbeddedBackend:
    """What the bus calls in embedded mode."""

    def __init__(self, store: str, path: Path | None, settings: Settings) -> None:
        if store not in STORES:
            raise UsageError(f"store must be one of {', '.join(STORES)}, not {store!r}")
        if path is None and store != "memory":
            raise UsageError(f"a {store} store needs a path: the project directory its log goes in")
        self.store = store
        self.path = path
        self.settings = settings
        self._temporary: Path | None = None
        self._project: Project | None = None
        self._members: dict[str, FunctionMember] = {}

    @property
    def project(self) -> Project:
        if self._project is None:
            raise UsageError("the bus is not started: use `async with` or `await bus.start()`")
        return self._project

    async def start(self) -> None:
        directory = self.path
        if directory is None:
            directory = self._temporary = Path(tempfile.mkdtemp(prefix="elsabro-bus-"))
        directory = directory.resolve()
        if not directory.is_dir():
            raise UsageError(f"not a directory: {directory}")
        project = Project(directory, self.settings, None)
        store = open_store(directory, self.store, ".elsabro/events", self.settings)
        await asyncio.to_thread(project.open, store)
        project.log.start()
        if self.path is not None:  # a real project: its config applies as in the daemon, trust too
            settings = self.settings
            loaded = await asyncio.to_thread(
                trust.load, directory, settings.user_config_file, settings.state_dir
            )
            project.apply(loaded.config, loaded.message(directory))
            if project.untrusted:
                log.warning("%s", project.untrusted)
        self._project = project

    async def close(self) -> None:
        if self._project is not None:
            await self._project.close()
            self._project = None
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    async def append(self, events: list[PublishRequest]) -> list[dict[str, Any]]:
        return await self.project.log.append([event.to_event() for event in events])

    async def select(self, query: Query) -> list[dict[str, Any]]:
        lines = await asyncio.to_thread(self.project.log.select, query)
        return [json.loads(line) for line in lines]

    async def subscribe(self, subscriber: Subscriber, after: int | None = None) -> None:
        member = FunctionMember(subscriber)
        self.project.dispatcher.join(member, after)
        self._members[subscriber.id] = member

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        member = self._members.pop(subscriber.id, None)
        if member is not None:
            await self.project.dispatcher.leave(member)

    async def ack(self, subscriber: Subscriber, event_id: str, ok: bool) -> None:
        self.project.dispatcher.ack(subscriber.selection.name, event_id, ok)

    async def dead_letters(self, subscription: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(DeadLetters(self.project.path).entries, subscription)
