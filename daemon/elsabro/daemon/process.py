"""The daemon process: one per user, serving every project over one Unix socket.

Lifecycle, in order:
  startup   take the lock (one instance at a time: an flock, released by the kernel
            when the process dies, so no stale pid file can block a restart), bind the
            socket owner-only inside an owner-only directory, signal `ready`.
  serve     accept connections, up to a limit per listener; refuse peers of another uid
            where the OS tells it.
  shutdown  stop accepting, let requests in flight finish (bounded), write and fsync
            everything accepted, close the logs, remove the socket, release the lock.

SIGTERM, SIGINT and `POST /v1/shutdown` start a graceful shutdown; a second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import logging.handlers
import os
import signal
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from elsabro.config import trust
from elsabro.config.files import CONFIG_FILE
from elsabro.core import descriptors
from elsabro.core.errors import ConfigError, ElsabroError, Unauthorized
from elsabro.core.model import Event
from elsabro.core.settings import Settings
from elsabro.daemon.client import check_socket_file
from elsabro.daemon.http import Authorize, Request, Response, serve_connection
from elsabro.daemon.logs import setup_logging
from elsabro.daemon.server import Server
from elsabro.daemon.system import (
    acquire_lock,
    detach_stdio,
    listen_backlog,
    load_token,
    log_descriptor_errors_briefly,
    peer_uid,
    prepare_socket_dir,
    raise_fd_limit,
)
from elsabro.daemon.watcher import Watcher
from elsabro.ingest.spool import is_spool_file, pending, spool_dir
from elsabro.projects.project import Project, Projects

log = logging.getLogger("elsabro.daemon")

RELOAD_DELAY_S = 0.2


def config_invalid(project: Path, problems: list[str]) -> Event:
    """The `config.invalid` event: what is wrong (the last good config, if any, keeps running)."""
    payload = {"file": str(project / CONFIG_FILE), "errors": problems}
    return Event.new("config.invalid", payload, metadata={"projectDir": str(project)})


def package_version() -> str:
    try:
        return version("elsabro")
    except PackageNotFoundError:
        return "0+unknown"


class Daemon:
    """The daemon: call `serve()` inside an event loop; `ready` is set once it accepts."""

    def __init__(self, settings: Settings, open_at_start: list[str] | None = None) -> None:
        self.settings = settings
        self.open_at_start = open_at_start or []
        self.version = package_version()
        self.started_monotonic = time.monotonic()
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="elsabro-io")
        self.projects = Projects(settings, self.io)
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._token = ""
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._open = {"unix": 0, "tcp": 0}  # connections served now, per listener
        self._refused_at = 0.0  # when a refusal over the limit was last logged
        self._lock_fd: int | None = None
        self._in_flight = 0
        self._app = Server(self.projects, self.status, self.request_stop)
        self._watcher = Watcher()
        self.projects.on_open.append(self._project_opened)
        self.projects.on_close.append(self._project_closed)
        self._watches: dict[Project, list[Any]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._reloads: dict[Path, asyncio.TimerHandle] = {}

    def request_stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """What `GET /v1/status` answers."""
        return {
            "pid": os.getpid(),
            "socket": str(self.settings.socket_path),
            "uptimeS": round(time.monotonic() - self.started_monotonic, 3),
            "projects": self.projects.served(),
            "version": self.version,
            "tcpPort": self.settings.tcp_port or None,
        }

    async def serve(self) -> None:
        await self.startup()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        settings = self.settings
        settings.check_socket_path()
        check_socket_file(settings.socket_path)  # a file that is not our socket is never touched
        prepare_socket_dir(settings.socket_path.parent)
        self._lock_fd = acquire_lock(settings.lock_path)
        descriptors.reserve()  # for a segment roll when connections have taken every descriptor
        log_descriptor_errors_briefly(asyncio.get_running_loop())
        if check_socket_file(settings.socket_path):
            settings.socket_path.unlink()  # left by a daemon that was killed; the lock says it is gone
        if settings.tcp_port:  # before the socket: a daemon that answers has all its listeners
            await self._listen_on_loopback()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(settings.socket_path), backlog=listen_backlog()
            )
        finally:
            os.umask(old_umask)
        os.chmod(settings.socket_path, 0o600)
        for marker in settings.socket_path.parent.glob("start.*"):
            marker.rmdir()  # the hook's start-attempt markers: a daemon runs now
        self.started_monotonic = time.monotonic()
        log.info("elsabro %s listening on %s (pid %d)", self.version, settings.socket_path, os.getpid())
        self.ready.set()
        self._watch_user_config()
        self._spawn(self._open_spooled_projects())
        self._spawn(self._maintain())

    async def _maintain(self) -> None:
        """Now and then: drain spools that a full disk left behind, and apply retention.

        A spool file is drained as soon as it appears; this catches the ones whose drain
        failed (no space to write them) once space is back.
        """
        retention_due = time.monotonic() + self.settings.maintenance_interval_s
        while True:
            await asyncio.sleep(self.settings.maintenance_interval_s)
            descriptors.reserve()  # taken again once descriptors are free
            await self.projects.prune()  # a directory replaced: its consumers stop
            for project in self.projects.open_projects():
                waiting = await asyncio.to_thread(pending, spool_dir(project.path))
                if waiting and project.log.failure is None:
                    await project.drainer.drain_logged()
            if time.monotonic() >= retention_due:
                retention_due = time.monotonic() + self.settings.retention_interval_s
                for project in self.projects.open_projects():
                    try:
                        await project.apply_retention()
                    except (OSError, ElsabroError) as exc:
                        log.error("retention for %s failed: %s", project.path, exc)

    async def _listen_on_loopback(self) -> None:
        """The optional TCP listener: 127.0.0.1 only, and a bearer token on every request."""
        self._token = await asyncio.to_thread(load_token, self.settings.token_path)
        # Its backlog is its connection limit: asyncio accepts up to `backlog` connections at a
        # time before any is served (or refused), so a flood would hold that many descriptors.
        self._tcp_server = await asyncio.start_server(
            self._accept_tcp,
            host="127.0.0.1",
            port=self.settings.tcp_port,
            backlog=min(listen_backlog(), self.settings.max_tcp_connections),
        )
        log.info(
            "also listening on 127.0.0.1:%d (token in %s)", self.settings.tcp_port, self.settings.token_path
        )

    def _watch_user_config(self) -> None:
        """The user's config is merged under every project's, and the record of trusted configs
        decides what of each runs: a change of either reloads them all."""
        loop = asyncio.get_running_loop()
        user_file = self.settings.user_config_file

        def reload_all() -> None:
            for project in self.projects.open_projects():
                self._schedule_reload(project)

        def changed() -> None:  # from watchdog's thread
            loop.call_soon_threadsafe(reload_all)

        self._watcher.watch(user_file.parent, lambda name: name == user_file.name, changed)
        # `elsabro trust` and `--revoke` take effect at once: every open project's config is re-read.
        self._watcher.watch(self.settings.state_dir, lambda name: name == trust.TRUST_FILE, changed)

    async def _open_spooled_projects(self) -> None:
        """Pick up events hooks spooled while no daemon ran: open those projects now."""
        known = [str(p) for p in self.projects.known() if pending(spool_dir(p))]
        for path in dict.fromkeys([*self.open_at_start, *known]):
            try:
                await self.projects.get(path)
            except ElsabroError as exc:
                log.warning("could not open %s at start: %s", path, exc)

    async def _project_opened(self, project: Project) -> None:
        """The spool first, then subscriptions: durable ones resume from their cursors and
        so see the spooled events; the others start at the head and see only live events."""
        await project.drainer.drain()
        await self._load_config(project)
        loop = asyncio.get_running_loop()

        def spool_changed() -> None:  # from watchdog's thread
            loop.call_soon_threadsafe(self._spawn, project.drainer.drain_logged())

        def config_changed() -> None:
            loop.call_soon_threadsafe(self._schedule_reload, project)

        self._watches[project] = [
            self._watcher.watch(spool_dir(project.path), is_spool_file, spool_changed),
            self._watcher.watch(
                project.path / CONFIG_FILE.parent, lambda name: name == CONFIG_FILE.name, config_changed
            ),
        ]

    def _project_closed(self, project: Project) -> None:
        """A project closed for good (its directory replaced): watching the path again is the
        new project's business, and a reload pending for the old one is moot."""
        for watch in self._watches.pop(project, []):
            self._watcher.unwatch(watch)
        pending_reload = self._reloads.pop(project.path, None)
        if pending_reload is not None:
            pending_reload.cancel()  # the next project there loads its config when it opens

    def _schedule_reload(self, project: Project) -> None:
        # Editors write a file in several steps: apply once, shortly after the last one.
        pending_reload = self._reloads.pop(project.path, None)
        if pending_reload is not None:
            pending_reload.cancel()
        self._reloads[project.path] = asyncio.get_running_loop().call_later(
            RELOAD_DELAY_S, lambda: self._spawn(self._reload(project))
        )

    async def _reload(self, project: Project) -> None:
        self._reloads.pop(project.path, None)
        await self._load_config(project)
        log.info("config reloaded for %s", project.path)

    async def _load_config(self, project: Project) -> None:
        """Apply the project's config, its handlers only once trusted; an invalid one keeps the
        last good one running."""
        settings = self.settings
        try:
            loaded = await asyncio.to_thread(
                trust.load, project.path, settings.user_config_file, settings.state_dir
            )
        except ConfigError as exc:
            project.config_problems = exc.details
            if project.config_valid_once:
                log.error("invalid config for %s, keeping the last good one: %s", project.path, exc)
            else:
                log.error(
                    "invalid config for %s, no subscription or webhook runs until it is fixed: %s",
                    project.path,
                    exc,
                )
            await project.log.append([config_invalid(project.path, exc.details)])
            project.apply(project.config, project.untrusted)
            return
        project.config_problems, project.config_valid_once = [], True
        untrusted = loaded.message(project.path)
        if untrusted:
            log.warning("%s", untrusted)
        project.apply(loaded.config, untrusted)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        log.info("shutting down")
        for server in (self._server, self._tcp_server):
            if server is not None:
                server.close()  # stop accepting
        self._watcher.stop()
        for task in self._background:
            task.cancel()
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # requests in flight finish; idle keep-alives do not count
        # Closing a connection ends its loop (and any `follow` stream) at its next read.
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        await self.projects.close_all()  # every accepted write is fsynced before this returns
        self.io.shutdown(wait=True)
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket_path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        log.info("stopped")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            writer.close()
            return
        await self._serve(reader, writer, "unix", self.settings.max_connections, None)

    async def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A loopback TCP connection: any local user can connect, so each request shows the token,
        in its head, before any of its body is read."""
        await self._serve(reader, writer, "tcp", self.settings.max_tcp_connections, self._check_token)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        listener: str,
        limit: int,
        authorize: Authorize | None,
    ) -> None:
        if self._open[listener] >= limit:
            writer.transport.abort()  # at once: nothing read, nothing held
            self._log_refusal(listener, limit)
            return
        task = asyncio.current_task()
        assert task is not None
        self._open[listener] += 1
        self._connections[task] = writer  # closed at shutdown, which ends the connection's loop
        try:
            await serve_connection(
                reader,
                writer,
                self._handle,
                max_body_bytes=self.settings.max_request_bytes,
                idle_timeout_s=self.settings.idle_timeout_s,
                header_timeout_s=self.settings.header_timeout_s,
                body_timeout_s=self.settings.body_timeout_s,
                max_json_nodes=self.settings.max_json_nodes,
                authorize=authorize,
            )
        finally:
            self._connections.pop(task, None)
            self._open[listener] -= 1

    def _log_refusal(self, listener: str, limit: int) -> None:
        now = time.monotonic()
        if now - self._refused_at >= 60.0:  # a flood must not flood the log too
            self._refused_at = now
            log.warning("%s listener: %d connections served already; closing new ones", listener, limit)

    def _check_token(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
            raise Unauthorized("send Authorization: Bearer <token>; the token is in the daemon's state dir")

    async def _handle(self, request: Request) -> Response:
        # Counted so that shutdown waits for requests in flight, not for idle keep-alives.
        self._in_flight += 1
        try:
            return await self._app(request)
        finally:
            self._in_flight -= 1


def run(settings: Settings, *, foreground: bool = True, open_at_start: list[str] | None = None) -> None:
    """Run the daemon until it is stopped (the body of `elsabro daemon run`)."""
    setup_logging(settings, foreground=foreground)
    raise_fd_limit()

    async def main() -> None:
        daemon = Daemon(settings, open_at_start)
        loop = asyncio.get_running_loop()
        stops = 0

        def on_signal() -> None:
            nonlocal stops
            stops += 1
            if stops > 1:
                os._exit(1)  # a second signal: the user wants out now
            daemon.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        serving = asyncio.ensure_future(daemon.serve())
        ready = asyncio.ensure_future(daemon.ready.wait())
        await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not foreground and daemon.ready.is_set():
            detach_stdio()  # start-up errors reached the starter; from now on only the log file
        await serving

    asyncio.run(main())
