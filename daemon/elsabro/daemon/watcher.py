"""Watching directories for files that appear or change (watchdog), for the daemon's loop.

Used for the hook's spool (new spool files are drained) and for config files (a change
is applied within a second). Only writes count: a file created, modified, moved or
deleted. Opening, reading and closing a file unwritten (inotify reports those too) are
not changes, so another program reading the config does not make the daemon reload it.
One observer thread serves every watch; callbacks arrive on that thread, so they must
hand over to the event loop themselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch


# watchdog's event types that mean the file's content may differ.
WRITES = frozenset({"created", "modified", "moved", "deleted"})


class Watcher:
    """Calls `on_change` when a file whose name passes `wanted` appears or changes."""

    def __init__(self) -> None:
        self._observer: BaseObserver | None = None

    def watch(
        self, directory: Path, wanted: Callable[[str], bool], on_change: Callable[[], None]
    ) -> ObservedWatch:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in WRITES:
                    return
                for path in (event.src_path, event.dest_path):
                    if path and wanted(os.path.basename(os.fsdecode(path))):
                        on_change()
                        return

        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._observer.schedule(Handler(), str(directory), recursive=False)

    def unwatch(self, watch: ObservedWatch) -> None:
        """Stop a watch (its directory may be gone already)."""
        if self._observer is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
