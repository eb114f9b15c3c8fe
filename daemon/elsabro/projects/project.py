"""The projects one daemon serves: each opened on first use, recovered, then kept open.

A request names its project directory. The first request for a project validates the
path, recovers its log and starts its writer; later requests reuse it. The daemon
remembers every project it has served (in its state dir), so that on start it can
pick up events that hooks spooled while it was down.

A project is its directory, not its name: `rm -rf repo && git clone ... repo` makes a new
one at the same path. The writer's lock file is what the daemon holds open, so its
identity (device, inode) is the project's: every request checks it (one `stat`), and so
does every write group before it writes. A project whose lock file is gone or another is
closed (its consumers stopped) and the new directory is opened; nothing is acknowledged
into the files of the old one. A read that finds no `.elsabro/` at all creates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from elsabro.core import descriptors, durable
from elsabro.core.errors import LogInUse, OutOfDescriptors, ProjectError, ProjectMoved, StoreError
from elsabro.core.settings import Settings
from elsabro.delivery.context import Clients
from elsabro.delivery.dispatch import Dispatcher
from elsabro.ingest.hooks import Ingest
from elsabro.ingest.spool import Drainer
from elsabro.store import retention
from elsabro.store.backends import for_project
from elsabro.store.base import Removal, Store
from elsabro.store.files import refuse_symlinks
from elsabro.store.log import ProjectLog

log = logging.getLogger("elsabro.projects")

# Held by whichever process writes the project's log: the daemon, or an embedded EventBus.
WRITER_LOCK = Path(".elsabro") / "writer.lock"

# Keeps the log and every working file out of git, while a config file is committed.
GITIGNORE = """\
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
        self._lock_id: tuple[int, int] | None = None  # (device, inode) of the lock file held
        self.closing: asyncio.Future[None] | None = None  # set once it is being closed for good

    def open(self, store: Store | None = None) -> None:
        """Blocking: take the writer's lock, recover the log and write `.elsabro/.gitignore`.

        The store is the one the project's config names, unless one is given (an embedded bus).
        Whatever fails on the way, the lock and every file opened are let go again: a later
        request opens the project afresh instead of finding it locked by its own daemon.
        """
        refuse_symlinks(self.path)
        prepare_dir(self.path / ".elsabro")
        self._lock_fd, self._lock_id = _lock(self.path / WRITER_LOCK)
        try:
            # Read once: a change of backend needs a restart.
            self.log.store = store if store is not None else for_project(self.path, self.settings)[1]
            self.log.open()
            self.log.guard = self._check_in_place
            self.ingest.learn(json.loads(line) for _, line in self.log.recent)
            gitignore = self.path / ".elsabro" / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text(GITIGNORE)
        except BaseException:
            self.log.store.close()
            self.release()
            raise

    def in_place(self, name: str | None = None) -> bool:
        """Is the directory at `name` (default: the path opened) still this project? One stat."""
        if self.log.moved or self._lock_id is None:
            return False
        try:
            info = os.stat(os.path.join(name or self.path, WRITER_LOCK))
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._lock_id

    def _check_in_place(self) -> None:
        if not self.in_place():
            raise ProjectMoved(f"the directory {self.path} was removed or replaced; it is opened again")

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
        self._lock_id = None


def _lock(path: Path, attempts: int = 5) -> tuple[int, tuple[int, int]]:
    """An exclusive flock on the project's writer lock and the lock file's (device, inode),
    or LogInUse: two writers would fork the log.

    A lock only counts on the file the path names *now*: one taken on a file deleted (or
    replaced) in between would let a second writer lock the new file beside it.
    """
    for _ in range(attempts):
        fd = durable.try_lock(path)
        if fd is None:
            raise LogInUse(
                f"another process writes the log of {path.parent.parent} "
                "(an embedded EventBus, or another elsabro daemon); it must close first"
            )
        held = os.fstat(fd)
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return fd, (held.st_dev, held.st_ino)
        os.close(fd)  # the file was swapped under us: lock the one there now
    raise LogInUse(f"the writer lock {path} keeps being replaced; is another program removing it?")


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
        self._closing: dict[Path, asyncio.Future[None]] = {}  # replaced projects still closing
        self.on_open: list[OnOpen] = []
        # Called once a project is closed for good (replaced, or failed to open): the daemon
        # stops watching its spool and config.
        self.on_close: list[Callable[[Project], None]] = []

    def open_projects(self) -> list[Project]:
        return list(self._open.values())

    def served(self) -> list[str]:
        return sorted(str(path) for path in self._open)

    async def get(self, raw: str | None) -> Project:
        """The open project for a directory, opening it (and creating `.elsabro/`) on first use."""
        project = await self._get(raw, create=True)
        assert project is not None  # create=True never answers None
        return project

    async def find(self, raw: str | None) -> Project | None:
        """The same for a read: a project that is not open and has no `.elsabro/` yet is not
        opened (opening creates it). None then, which the caller answers as "no events"."""
        return await self._get(raw, create=False)

    async def _get(self, raw: str | None, create: bool) -> Project | None:
        known = self._by_name.get(raw) if raw else None
        if known is not None:
            # The hot path: one stat of the lock file instead of resolving the path (three lstat
            # calls), and it notices a directory removed or replaced under the same name.
            if known.in_place(raw):
                return known
            await self._forget(raw, known)  # type: ignore[arg-type]  # raw is set: it was found
        path = check_project_dir(raw)
        project = self._open.get(path)
        if project is not None and not project.in_place():
            await self.drop(project)
            project = None
        if project is not None:
            self._by_name[raw] = project  # type: ignore[index]  # raw is set: check_project_dir passed
            return project
        if not create and not (path / ".elsabro").is_dir():
            refuse_symlinks(path)
            return None
        closing = self._closing.get(path)
        if closing is not None:  # the replaced project there still holds what it had open
            await asyncio.shield(closing)
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

    async def _forget(self, name: str, project: Project) -> None:
        """A name no longer leads to this project: forget the name, and close the project if its
        own directory was removed or replaced (a symlink pointed elsewhere leaves it open)."""
        self._by_name.pop(name, None)
        if not await asyncio.to_thread(project.in_place):
            await self.drop(project)

    async def drop(self, project: Project) -> None:
        """Close a project whose directory was removed or replaced: its writes are finished (or
        refused, never written into the old files), its consumers stopped, its lock let go."""
        if project.closing is None:
            project.log.moved = True  # a write still reaching it is refused, to go to the new directory
            for name in [name for name, known in self._by_name.items() if known is project]:
                del self._by_name[name]
            if self._open.get(project.path) is project:
                del self._open[project.path]
            log.warning("project %s was removed or replaced; closing what was open of it", project.path)
            project.closing = asyncio.ensure_future(self._close(project))
            self._closing[project.path] = project.closing
        await asyncio.shield(project.closing)

    async def _close(self, project: Project) -> None:
        try:
            await project.close()
        except Exception as exc:  # its files are gone: closing what is left may fail, and must not stop us
            project.release()
            log.warning("closing the replaced project %s: %s", project.path, exc)
        for closed in self.on_close:
            closed(project)
        if self._closing.get(project.path) is project.closing:
            del self._closing[project.path]

    async def prune(self) -> None:
        """Close every open project whose directory was removed or replaced (its consumers
        stop); the next request for one opens the new directory."""
        for project in list(self._open.values()):
            if not await asyncio.to_thread(project.in_place):
                await self.drop(project)

    async def _open_project(self, path: Path) -> Project:
        project = Project(path, self.settings, self._io)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._io, project.open)
            project.log.start()
            await loop.run_in_executor(self._io, self._remember, path)
            for hook in self.on_open:  # before any request reaches the project: spooled events go first
                await hook(project)
        except BaseException as exc:
            # Never a half-open project holding its lock: every later request would get LogInUse.
            with contextlib.suppress(Exception):
                await project.close()
            project.release()
            for closed in self.on_close:
                closed(project)
            if isinstance(exc, OSError) and descriptors.exhausted(exc):  # passing: the next request retries
                raise OutOfDescriptors(f"no file descriptor left to open {path}; retry shortly") from None
            if isinstance(exc, OSError):  # one clear line for the client, not a dropped connection
                raise StoreError(f"opening the project {path} failed: {exc}") from None
            raise
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
