"""What every command needs: the settings, the project, and a client of the daemon."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from elsabro.core.errors import DaemonNotRunning
from elsabro.core.settings import Settings, default_project
from elsabro.daemon import client as client_mod

T = TypeVar("T")


class Context:
    """What every command needs: settings and the project."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.settings = Settings.from_env()
        self.project = str(Path(args.project).absolute()) if args.project else str(default_project())

    def client(self) -> client_mod.Client:
        return client_mod.Client(self.settings, self.project)

    def with_daemon(self, call: Callable[[client_mod.Client], T]) -> T:
        """Run a call, starting the daemon once if none answers."""
        try:
            return call(self.client())
        except DaemonNotRunning:
            client_mod.start_daemon(self.settings)
            return call(self.client())
