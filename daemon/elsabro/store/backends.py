"""Which backend a project's log uses: `events.store.backend` in its config, read once."""

from __future__ import annotations

from pathlib import Path

from elsabro.config.files import load
from elsabro.config.schema import StoreConfig
from elsabro.core.errors import ConfigError
from elsabro.core.settings import Settings
from elsabro.store.base import Store
from elsabro.store.files import FileStore
from elsabro.store.memory import MemoryStore
from elsabro.store.sqlite import SqliteStore


def for_project(project_dir: Path, settings: Settings) -> tuple[str, Store]:
    """The backend a project's config names and its store (the default if the config is invalid:
    the daemon reports an invalid config when it applies it)."""
    try:
        config = load(project_dir, settings.user_config_file).events.store
    except ConfigError:
        config = StoreConfig()
    return config.backend, open_store(project_dir, config.backend, config.path, settings)


def open_store(project_dir: Path, backend: str, path: str, settings: Settings) -> Store:
    """The store a project's config names (`events.store.backend` and `path`)."""
    directory = project_dir / path
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SqliteStore(directory / "events.db")
    return FileStore(directory, settings)
