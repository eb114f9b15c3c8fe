"""The hook's spool: events the hook wrote to disk while the daemon was unreachable.

The hook writes `<project>/.elsabro/spool/<nanoseconds, 19 digits>-<pid>.json` (to a
temporary name, then renamed, owner-only). The daemon drains a project's spool when it
opens the project, before any live request, and again whenever files appear (watchdog).

Exactly once, in the order the hooks ran: files are taken in name order, in chunks;
each chunk is appended as one atomic batch whose events carry `metadata.spoolId` (the
file name); the files are deleted only after the batch is fsynced. If the daemon dies
between the two, the next drain skips every file whose id is already in the log.
A file that is not a hook payload is kept, redacted, in `spool/rejected/` and reported,
never retried forever; the raw file is removed (the tail of a payload too large for the
daemon is such a file, and may hold anything; it is kept redacted as text).

The hook names each delivery `<ns>-<pid>` before it sends it, and spools it as
`<ns>-<pid>.json` when the daemon does not acknowledge it in time; the live path stores
that same file name in `metadata.spoolId`. `Deliveries` knows which ids are stored or being stored, so a
delivery the daemon stored after the hook gave up is not stored again by the drain, and
a late live request whose spool file was drained first is not stored again either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from elsabro.core import durable
from elsabro.core.errors import BadRequest, Busy, ElsabroError
from elsabro.core.jsonbody import parse_json
from elsabro.core.model import Event, format_time
from elsabro.core.redact import Rules, scrub, scrub_value
from elsabro.ingest.hooks import SESSION_START_WAIT_S, Ingest
from elsabro.store.log import ProjectLog

log = logging.getLogger("elsabro.spool")

SPOOL = Path(".elsabro") / "spool"
REJECTED = "rejected"
_NAME = re.compile(r"^(\d{10,20})-(\d+)\.json$")
_DELIVERY = re.compile(r"^\d{10,20}-\d+$")
# Stored delivery ids remembered per project: far more than can be in flight at once (a paused
# daemon's listen queue holds 100 requests), few enough to cost at most a couple of MiB.
REMEMBERED_DELIVERIES = 10_000
# Files per atomic batch: bounds memory and the work redone after a crash.
CHUNK_FILES = 500
BUSY_RETRIES = 20


def is_spool_file(name: str) -> bool:
    return _NAME.match(name) is not None


def delivery_id(raw: str | None) -> str | None:
    """The hook's delivery id (`<ns>-<pid>`, the name its spool file gets), checked: it names a file."""
    if raw is None:
        return None
    if not _DELIVERY.match(raw):
        raise BadRequest(f"Elsabro-Delivery must be <nanoseconds>-<pid>, not {raw[:40]!r}")
    return raw


class Deliveries:
    """Which hook deliveries a project's log holds, or is storing right now (by spool id).

    The live path and the drain each settle, check and claim an id with no await between
    the check and the claim, so one of them stores it and the other skips it.
    """

    def __init__(self, stored: Iterable[str] = (), keep: int = REMEMBERED_DELIVERIES) -> None:
        # Oldest first, so that trimming forgets the oldest (the recovered ids come as a set).
        self._stored: OrderedDict[str, None] = OrderedDict.fromkeys(sorted(stored, key=_order))
        self._keep = keep
        self._busy: dict[str, asyncio.Event] = {}
        self._trim()

    def is_stored(self, key: str) -> bool:
        return key in self._stored

    async def settled(self, key: str) -> None:
        """Return once nobody is storing `key` (then the caller checks and claims it at once)."""
        while (busy := self._busy.get(key)) is not None:
            await busy.wait()

    def claim(self, key: str) -> None:
        self._busy[key] = asyncio.Event()

    def done(self, keys: Iterable[str], stored: bool) -> None:
        for key in keys:
            busy = self._busy.pop(key, None)
            if busy is not None:
                busy.set()
            if stored:
                self._stored[key] = None
                self._stored.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        while len(self._stored) > self._keep:
            self._stored.popitem(last=False)


def _order(name: str) -> tuple[int, int]:
    match = _NAME.match(name)
    return (int(match.group(1).ljust(19, "0")), int(match.group(2))) if match else (0, 0)


def spool_dir(project: Path) -> Path:
    return project / SPOOL


def pending(directory: Path) -> list[str]:
    """Spooled file names in the order the hooks wrote them."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), int(m.group(2)), name) for name in names if (m := _NAME.match(name))]
    found.sort()
    return [name for _, _, name in found]


def _timestamp(name: str) -> str:
    digits = _NAME.match(name).group(1)  # type: ignore[union-attr]
    return format_time(int(digits.ljust(19, "0")) / 1e9)


def _read(directory: Path, names: list[str], max_json_nodes: int) -> list[tuple[str, Any]]:
    """(name, payload) for each file; payload is an exception for a file that is not JSON."""
    out: list[tuple[str, Any]] = []
    for name in names:
        try:
            out.append(
                (name, parse_json((directory / name).read_bytes(), max_json_nodes))
            )  # a request's checks
        except (OSError, BadRequest) as exc:
            out.append((name, exc))
    return out


def _is_session_start(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("hook_event_name") == "SessionStart"


def session_start_first(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Put each SessionStart before its session's events spooled just before it.

    Claude Code runs a session's first hooks in parallel processes, so InstructionsLoaded
    can be spooled a moment before SessionStart. As on the live path (`Ingest.session_started`),
    a SessionStart goes ahead of its session's events spooled at most SESSION_START_WAIT_S
    earlier; everything else keeps the order the hooks ran.
    """
    out = list(items)
    window_ns = int(SESSION_START_WAIT_S * 1e9)
    for name, payload in items:
        if not _is_session_start(payload):
            continue
        at = out.index((name, payload))
        stamp = _ns(name)
        to = position = at
        while position > 0 and stamp - _ns(out[position - 1][0]) <= window_ns:
            before = out[position - 1][1]
            if isinstance(before, dict) and before.get("session_id") == payload.get("session_id"):
                if _is_session_start(before):
                    break
                to = position - 1  # other sessions' events in between keep their places
            position -= 1
        out.insert(to, out.pop(at))
    return out


def _ns(name: str) -> int:
    return int(_NAME.match(name).group(1).ljust(19, "0"))  # type: ignore[union-attr]


def _remove(directory: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    durable.fsync_dir(directory)


_last_ns = 0


def write(
    project: Path,
    body: bytes,
    *,
    rejected: str | None = None,
    delivery: str | None = None,
    rules: Rules | None = None,
) -> Path:
    """Spool a hook payload on the daemon's side (it could not store it now), as the hook would.

    A delivery the hook named gets the name the hook would give it: if the hook gave up
    and spooled it too, the two are one file. With `rejected`, the payload is kept in
    `spool/rejected/` for inspection instead. Either is redacted first, by the project's
    rules when it is open.
    """
    global _last_ns
    directory = spool_dir(project) / (REJECTED if rejected else "")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if delivery is None:
        _last_ns = max(time.time_ns(), _last_ns + 1)  # unique and ordered within this daemon
        delivery = f"{_last_ns}-{os.getpid()}"
    name = f"{delivery}.json"
    durable.write_atomically(directory / name, _redacted(body, rules or Rules()))
    if rejected:
        log.error("hook payload rejected (%s); kept, redacted, in %s", rejected, directory / name)
    return directory / name


def drop_hook_copy(project: Path, delivery: str | None) -> None:
    """Remove the copy the hook keeps of a delivery (`spool/.<id>.tmp`): the event is safe now.

    Called only once the event is stored, spooled or kept aside. If the hook gave up
    first, its copy is a spool file by now, and the drain skips what is stored.
    """
    if delivery is not None:
        with contextlib.suppress(OSError):  # gone already; or the hook removes it itself
            (spool_dir(project) / f".{delivery}.tmp").unlink()


def _redacted(body: bytes, rules: Rules) -> bytes:
    """What the daemon itself spools is redacted like what it stores (the hook's own spool
    file is the one place raw input touches the disk, owner-only, until it is drained)."""
    try:
        return json.dumps(scrub_value(json.loads(body), rules), ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # not JSON (the tail of a payload cut short): as text
        return scrub(body.decode("utf-8", "replace"), rules).encode()


def _reject(directory: Path, name: str, reason: str, rules: Rules) -> None:
    """Keep a file that is no hook payload, redacted, in `rejected/`; the raw one goes."""
    target = directory / REJECTED
    target.mkdir(mode=0o700, exist_ok=True)
    try:
        body = (directory / name).read_bytes()
    except FileNotFoundError:
        return
    durable.write_atomically(target / name, _redacted(body, rules))
    (directory / name).unlink(missing_ok=True)
    durable.fsync_dir(directory)
    log.error("spool file %s rejected (%s); kept, redacted, in %s", name, scrub(reason, rules), target)


class Drainer:
    """Drains one project's spool, one drain at a time."""

    def __init__(self, path: Path, project_log: ProjectLog, ingest: Ingest) -> None:
        self.path = path
        self.project_log = project_log
        self.ingest = ingest
        self.directory = spool_dir(path)
        self._lock = asyncio.Lock()
        self._again = False
        self._deliveries: Deliveries | None = None

    @property
    def deliveries(self) -> Deliveries:
        """Made on first use, from the ids the opened log recovered."""
        if self._deliveries is None:
            self._deliveries = Deliveries(self.project_log.spool_ids)
        return self._deliveries

    async def deliver(self, payload: Any, delivery: str | None) -> bool:
        """Store one live hook delivery; False when that delivery is stored already.

        The events carry the spool file name the delivery would have (`<id>.json`) as their
        spool id, as if they had come by the spool.
        """
        if delivery is None:
            await self.project_log.append(self.ingest.events(payload))
            return True
        key = f"{delivery}.json"
        deliveries = self.deliveries
        await deliveries.settled(key)
        if deliveries.is_stored(key):  # the hook gave up on us and its spool file was drained first
            return False
        events = self.ingest.events(payload)
        deliveries.claim(key)
        stored = False
        try:
            await self.project_log.append(events, [{"spoolId": key} for _ in events])
            stored = True
        finally:
            deliveries.done([key], stored)
        return True

    async def drain_logged(self) -> None:
        """Drain, reporting a failure in the log instead of raising (background drains)."""
        try:
            await self.drain()
        except ElsabroError as exc:
            log.error(
                "draining the spool of %s failed: %s; the files stay for the next drain",
                self.path,
                exc,
            )

    async def drain(self) -> int:
        """Ingest every spooled event; returns how many files were taken."""
        if self._lock.locked():
            self._again = True  # the running drain goes round once more
            return 0
        taken = 0
        async with self._lock:
            self._again = True
            while self._again:
                self._again = False
                taken += await self._drain_all()
        return taken

    async def _drain_all(self) -> int:
        taken = 0
        while names := (await asyncio.to_thread(pending, self.directory))[:CHUNK_FILES]:
            await self._drain_chunk(names)
            taken += len(names)
        return taken

    async def _drain_chunk(self, names: list[str]) -> None:
        deliveries = self.deliveries
        events: list[Event] = []
        extra: list[dict[str, Any]] = []
        done: list[str] = []
        claimed: list[str] = []  # the spool id is the file name, as the live path records it too
        stored = False
        try:
            max_nodes = self.project_log.settings.max_json_nodes
            read = await asyncio.to_thread(_read, self.directory, names, max_nodes)
            for name, payload in session_start_first(read):
                await deliveries.settled(name)  # a live request storing this delivery finishes first
                if deliveries.is_stored(name):  # stored live, or before a crash cut the last drain short
                    done.append(name)
                    continue
                try:
                    if isinstance(payload, Exception):
                        raise ElsabroError(f"not JSON: {payload}")
                    made = self.ingest.events(payload, timestamp=_timestamp(name))
                except ElsabroError as exc:
                    await asyncio.to_thread(_reject, self.directory, name, str(exc), self.project_log.rules)
                    continue
                deliveries.claim(name)
                claimed.append(name)
                events.extend(made)
                extra.extend({"spoolId": name} for _ in made)
                done.append(name)
            if events:
                await self._append(events, extra)
            stored = True
        finally:
            deliveries.done(claimed, stored)
        await asyncio.to_thread(_remove, self.directory, done)
        if events:
            log.info("drained %d spooled events of %s", len(events), self.path)

    async def _append(self, events: list[Event], extra: list[dict[str, Any]]) -> None:
        """Append, waiting out a busy writer (bounded): the files stay until stored."""
        for attempt in range(BUSY_RETRIES):
            try:
                await self.project_log.append(events, extra)
                return
            except Busy:
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        await self.project_log.append(events, extra)
