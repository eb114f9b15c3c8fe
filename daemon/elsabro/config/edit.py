"""Editing the project's config file (`elsabro webhooks add|update|remove`, a 410 Gone).

Validated first (nothing is written if the result is invalid), then replaced atomically.
Keys elsabro does not know are kept as they are. What elsabro writes itself stays trusted
(trust.py): an edit of a config the user trusted, or of one that needed no trust, records
the new content as trusted; an edit of an untrusted config leaves it untrusted, since the
rest of it is still unreviewed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from elsabro.config import trust
from elsabro.config.files import CONFIG_FILE, merge, parse_json, read_json
from elsabro.config.schema import ProjectConfig, describe
from elsabro.core import durable
from elsabro.core.errors import ConfigError


def edit(
    project: Path,
    change: Callable[[dict[str, Any]], None],
    user_file: Path | None = None,
    state_dir: Path | None = None,
) -> ProjectConfig:
    """Change `.elsabro/config.json` safely: validated first (nothing written if invalid), then
    replaced atomically. Keys elsabro does not know are kept as they are. With `state_dir`
    (the user's), a trusted config stays trusted."""
    path = project / CONFIG_FILE
    raw, problem = trust.read_project_config(project)
    data = parse_json(raw, path)
    keep_trust = state_dir is not None and trust.vouched(project, raw, problem, state_dir)
    change(data)
    merged = merge(read_json(user_file), data) if user_file else data
    try:
        loaded = ProjectConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe(exc)), details=describe(exc)) from None
    written = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    (project / CONFIG_FILE.parent).mkdir(mode=0o700, exist_ok=True)
    if keep_trust and state_dir is not None:
        # Recorded before the file changes: a daemon that reloads it finds it trusted at once.
        trust.record(state_dir, project, written)
    durable.write_atomically(path, written, mode=0o644)
    return loaded


def _endpoints(data: dict[str, Any]) -> list[dict[str, Any]]:
    webhooks = data.setdefault("events", {}).setdefault("webhooks", {})
    endpoints: list[dict[str, Any]] = webhooks.setdefault("endpoints", [])
    return endpoints


def _find(data: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    for endpoint in _endpoints(data):
        if isinstance(endpoint, dict) and endpoint.get("id") == endpoint_id:
            return endpoint
    raise ConfigError(f"no webhook endpoint {endpoint_id!r} in the project's config")


def add_endpoint(
    project: Path, endpoint: dict[str, Any], user_file: Path | None = None, state_dir: Path | None = None
) -> ProjectConfig:
    return edit(project, lambda data: _endpoints(data).append(endpoint), user_file, state_dir)


def update_endpoint(
    project: Path,
    endpoint_id: str,
    changes: dict[str, Any],
    user_file: Path | None = None,
    state_dir: Path | None = None,
) -> ProjectConfig:
    return edit(project, lambda data: _find(data, endpoint_id).update(changes), user_file, state_dir)


def remove_endpoint(
    project: Path, endpoint_id: str, user_file: Path | None = None, state_dir: Path | None = None
) -> ProjectConfig:
    return edit(project, lambda data: _endpoints(data).remove(_find(data, endpoint_id)), user_file, state_dir)
