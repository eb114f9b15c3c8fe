"""Which backend a project's log uses: `events.store.backend` in its config, read once."""

from __future__ import annotations

from pathlib import Path

from elsabro.config.files import CONFIG_FILE, load_store
from elsabro.core.errors import ConfigError
from elsabro.core.settings import Settings
from elsabro.store.base import Store
from elsabro.store.files import FileStore
from elsabro.store.memory import MemoryStore
from elsabro.store.sqlite import SqliteStore


def for_project(project_dir: Path, settings: Settings) -> tuple[str, Store]:
    """The backend a project's config names and its store. A config whose `events.store` cannot
    be read (an unknown backend, a file that is not JSON) is a ConfigError: the project does not
    open until it is fixed, rather than writing its events to a store the config does not name."""
    try:
        config = load_store(project_dir, settings.user_config_file)
    except ConfigError as exc:
        raise ConfigError(
            f"cannot open {project_dir}: the event store is chosen from {CONFIG_FILE} and it is invalid: "
            f"{exc} (`elsabro config check` lists the mistakes)",
            details=exc.details,
        ) from None
    return config.backend, open_store(project_dir, config.backend, config.path, settings)


def open_store(project_dir: Path, backend: str, path: str, settings: Settings) -> Store:
    """The store a project's config names (`events.store.backend` and `path`)."""
    directory = project_dir / path
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SqliteStore(directory / "events.db")
    return FileStore(directory, settings)
