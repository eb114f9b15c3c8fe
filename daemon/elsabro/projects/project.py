"""The projects one daemon serves: each opened on first use, recovered, then kept open.

A request names its project directory. The first request for a project validates the
path, recovers its log and starts its writer; later requests reuse it. The daemon
remembers every project it has served (in its state dir), so that on start it can
pick up events that hooks spooled while it was down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path

from elsabro.config.schema import ProjectConfig
from elsabro.core import durable
from elsabro.core.errors import LogInUse, ProjectError
from elsabro.core.settings import Settings
from elsabro.delivery.context import Clients
from elsabro.delivery.dispatch import Dispatcher
from elsabro.ingest.hooks import Ingest
from elsabro.ingest.spool import Drainer
from elsabro.store import retention
from elsabro.store.backends import for_project
from elsabro.store.base import Removal, Store
from elsabro.store.log import ProjectLog

log = logging.getLogger("elsabro.projects")

# Held by whichever process writes the project's log: the daemon, or an embedded EventBus.
WRITER_LOCK = Path(".elsabro") / "writer.lock"

# Keeps the log and every working file out of git, while a config file is committed.
GITIGNORE = """\
# Held by whichever process writes the project's log: the daemon, or an embedded EventBus.
WRITER_LOCK = Path(".elsabro") / "writer.lock"

# Written by elsabro: the event log and its working files stay out of git.
*
!.gitignore
!config.json
!config.schema.json
"""


def check_project_dir(raw: str | None) -> Path:
    """The project directory a request names, or ProjectError saying what is wrong."""
    if not raw:
        raise ProjectError("no project: send the Elsabro-Project header with an absolute directory")
    if "\x00" in raw or not os.path.isabs(raw):
        raise ProjectError(f"project path must be absolute: {raw!r}")
    path = Path(os.path.realpath(raw))
    try:
        info = path.stat()
    except OSError:
        raise ProjectError(f"project directory does not exist: {raw}") from None
    if not path.is_dir():
        raise ProjectError(f"project path is not a directory: {raw}")
    if info.st_uid != os.getuid():
        raise ProjectError(f"project directory is not owned by the daemon's user: {raw}")
    return path


def prepare_dir(directory: Path) -> None:
    """Create `.elsabro/` owner-only, take group and others' access off one of the user's, and
    refuse one that is a symbolic link or another user's (a clone or a shared directory may
    bring either; the log would land where someone else chose)."""
    # Owner-only: the log is an audit trail of what the agent did, files and commands included.
    directory.mkdir(mode=0o700, exist_ok=True)
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ProjectError(f"{directory} is not a directory of its own (a symbolic link?): remove it")
    if info.st_uid != os.getuid():
        raise ProjectError(
            f"{directory} is owned by uid {info.st_uid}, not by you: elsabro will not use it; "
            "remove it or take it over (chown)"
        )
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700)
        log.warning("%s was open to group or others: made owner-only (0700)", directory)


class Project:
    """Everything the daemon keeps for one project."""

    def __init__(self, path: Path, settings: Settings, io: Executor | None) -> None:
        self.path = path
        self.settings = settings
        self.log = ProjectLog(path, settings, io)
        self.ingest = Ingest(str(path))
        self.drainer = Drainer(path, self.log, self.ingest)
        self.config = ProjectConfig()
        self.untrusted: str | None = None
        # What is wrong with the config file as last read ([] when it is valid), and whether a
        # valid one was ever applied: an invalid file at start leaves only the defaults running.
        self.config_problems: list[str] = []
        self.config_valid_once = False
        self.clients = Clients()
        self.dispatcher = Dispatcher(self)
        self._lock_fd: int | None = None

    def open(self, store: Store | None = None) -> None:
        """Blocking: take the writer's lock, recover the log and write `.elsabro/.gitignore`.

        The store is the one the project's config names, unless one is given (an embedded bus).
        """
        prepare_dir(self.path / ".elsabro")
        self._lock_fd = _lock(self.path / WRITER_LOCK)
        try:
            # Read once: a change of backend needs a restart.
            self.log.store = store if store is not None else for_project(self.path, self.settings)[1]
            self.log.open()
        except BaseException:
            self.release()
            raise
        self.ingest.learn(json.loads(line) for _, line in self.log.recent)
        gitignore = self.path / ".elsabro" / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text(GITIGNORE)

    def apply(self, config: ProjectConfig, untrusted: str | None = None) -> None:
        """Run under this config: its redaction for every later write, its subscriptions and
        webhook endpoints (unchanged ones keep running). `untrusted` says why the project's
        handlers are withheld from it (config/trust.py), if they are."""
        self.config = config
        self.untrusted = untrusted
        self.log.rules = replace(config.rules(), budget_ms=self.settings.redaction_budget_ms)
        self.dispatcher.apply(config, forget_removed=untrusted is None)

    async def apply_retention(self) -> Removal | None:
        """Apply the retention policy now, never past what a durable consumer still needs;
        what was removed, if anything."""
        policy = self.config.events.store.retention
        head, keep_from = self.log.committed_sequence, self.dispatcher.oldest_needed()
        cut = retention.plan(policy, head, keep_from, time.time())
        if cut is None:
            return None
        archive_dir = self.path / ".elsabro" / "archive" if policy.archive else None
        return await self.log.retire(cut, archive_dir)

    async def close(self) -> None:
        await self.dispatcher.stop()
        await self.clients.close()
        await self.log.close()
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the lock
            self._lock_fd = None


def _lock(path: Path) -> int:
    """An exclusive flock on the project's writer lock, or LogInUse: two writers would fork the log."""
    fd = durable.try_lock(path)
    if fd is None:
        raise LogInUse(
            f"another process writes the log of {path.parent.parent} "
            "(an embedded EventBus, or a daemon of another user session); it must close first"
        )
    return fd


# Called once a project is open, before any request reaches it (the spool drain).
# A failing hook leaves the project unopened; the next request tries again.
OnOpen = Callable[[Project], Awaitable[None]]


class Projects:
    """The open projects, by real path."""

    def __init__(self, settings: Settings, io: Executor | None = None) -> None:
        self.settings = settings
        self._io = io
        self._open: dict[Path, Project] = {}
        self._by_name: dict[str, Project] = {}  # the names requests used for open projects
        self._opening: dict[Path, asyncio.Future[Project]] = {}
        self.on_open: list[OnOpen] = []

    def open_projects(self) -> list[Project]:
        return list(self._open.values())

    def served(self) -> list[str]:
        return sorted(str(path) for path in self._open)

    async def get(self, raw: str | None) -> Project:
        """The open project for a directory, opening it on first use."""
        known = self._by_name.get(raw) if raw else None
        if known is not None:
            return known  # the hot path: no path resolution (three lstat calls) per request
        path = check_project_dir(raw)
        project = self._open.get(path)
        if project is not None:
            self._by_name[raw] = project  # type: ignore[index]  # raw is set: check_project_dir passed
            return project
        pending = self._opening.get(path)
        if pending is not None:  # another request is opening it right now
            return await asyncio.shield(pending)
        future: asyncio.Future[Project] = asyncio.get_running_loop().create_future()
        self._opening[path] = future
        try:
            project = await self._open_project(path)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it themselves
            raise
        finally:
            del self._opening[path]
        future.set_result(project)
        if raw:
            self._by_name[raw] = project
        return project

    async def _open_project(self, path: Path) -> Project:
        project = Project(path, self.settings, self._io)
        await asyncio.get_running_loop().run_in_executor(self._io, project.open)
        project.log.start()
        await asyncio.get_running_loop().run_in_executor(self._io, self._remember, path)
        for hook in self.on_open:  # before any request reaches the project: spooled events go first
            await hook(project)
        self._open[path] = project
        log.info("serving project %s (last sequence %d)", path, project.log.committed_sequence)
        return project

    async def close_all(self) -> None:
        """Finish and fsync every accepted write, then close every project."""
        await asyncio.gather(*(project.close() for project in self._open.values()))
        self._open.clear()
        self._by_name.clear()

    # -- the list of projects served before, for spool pick-up after a restart ------

    def known(self) -> list[Path]:
        try:
            return [Path(p) for p in json.loads(self.settings.projects_file.read_text())]
        except (OSError, ValueError):
            return []

    def _remember(self, path: Path) -> None:
        known = self.known()
        if path not in known:
            data = json.dumps([str(p) for p in [*known, path]], indent=1).encode()
            durable.write_atomically(self.settings.projects_file, data)
