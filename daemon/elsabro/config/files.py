"""Reading the configuration: `.elsabro/config.json`, merged over the user's own.

The user-level file (platformdirs config dir) is merged under the project's: objects
merge key by key, `subscriptions` merge by name, the project winning. Loading validates
everything and names the exact JSON path of each mistake.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from elsabro.config.schema import ProjectConfig, StoreConfig, describe, duplicate_names
from elsabro.core.errors import ConfigError

CONFIG_FILE = Path(".elsabro") / "config.json"


def merge(user: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    """The user's config with the project's laid over it."""
    merged = dict(user)
    for key, value in project.items():
        if key == "subscriptions" and isinstance(value, list) and isinstance(user.get(key), list):
            # Keyed by name when it is one (validation reports a name that is not a string).
            named = {_name_key(s, i): s for i, s in enumerate(user[key]) if isinstance(s, dict)}
            named.update({_name_key(s, -1 - i): s for i, s in enumerate(value) if isinstance(s, dict)})
            merged[key] = list(named.values())
        elif isinstance(value, dict) and isinstance(user.get(key), dict):
            merged[key] = merge(user[key], value)
        else:
            merged[key] = value
    return merged


def _name_key(subscription: dict[str, Any], position: int) -> str | int:
    name = subscription.get("name")
    return name if isinstance(name, str) else position


def read_json(path: Path) -> dict[str, Any]:
    """A config file's JSON; a missing file is an empty config."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return parse_json(raw, path)


def parse_json(raw: bytes, path: Path) -> dict[str, Any]:
    """A config file's bytes as its JSON object (`path` names it in errors)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    return data


def load(project: Path, user_file: Path) -> ProjectConfig:
    """The project's effective configuration as written, trusted or not (trust.py decides what
    of it runs), or ConfigError listing every mistake."""
    return validate(merge(read_json(user_file), read_json(project / CONFIG_FILE)))


def validate(data: dict[str, Any]) -> ProjectConfig:
    """Merged config data as a ProjectConfig, or ConfigError listing every mistake."""
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc)
        # Whole-file checks run only once every field is valid: name duplicates anyway.
        subs = data.get("subscriptions")
        if isinstance(subs, list) and not any("must be unique" in p for p in problems):
            problems += duplicate_names([s.get("name") for s in subs if isinstance(s, dict) and "name" in s])
        raise ConfigError("; ".join(problems), details=problems) from None


def load_store(project: Path, user_file: Path) -> StoreConfig:
    """`events.store` alone, validated: where the log lives does not depend on the rest of the
    config being valid, and a store that cannot be read from it is a ConfigError (never a
    silent fallback to the default backend, which would split the log in two places)."""
    data = merge(read_json(user_file), read_json(project / CONFIG_FILE))
    events = data.get("events", {})
    store = events.get("store", {}) if isinstance(events, dict) else None
    if not isinstance(store, dict):
        where = "events.store" if isinstance(events, dict) else "events"
        raise ConfigError(f"{where}: must be an object")
    try:
        return StoreConfig.model_validate(store)
    except ValidationError as exc:
        problems = describe(exc, prefix="events.store.")
        raise ConfigError("; ".join(problems), details=problems) from None


def schema() -> dict[str, Any]:
    result: dict[str, Any] = ProjectConfig.model_json_schema(by_alias=True)
    result["title"] = "elsabro project configuration (.elsabro/config.json)"
    return result
