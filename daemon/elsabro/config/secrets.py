"""Secrets in a config are references: `{"env": "NAME"}` or `{"file": "/path/outside/the/repo"}`.

`.elsabro/config.json` is committed with the project, so a webhook's signing secret or an
`Authorization` header written into it is in git for good. A reference names where the
secret lives instead; it is read when it is used (each delivery), so a rotated secret
takes effect without a reload, and a missing variable or file fails that endpoint's
delivery with one clear line while everything else keeps running. A file inside the
project tree is refused: it would be as committed as the config. Plain strings keep
working; `elsabro config check` warns about them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from elsabro.core.errors import ConfigError


class SecretRef(BaseModel):
    """Where a secret lives: an environment variable of the daemon, or a file outside the repo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    file: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('a secret reference is {"env": "NAME"} or {"file": "/path"}, one of them')
        if self.file is not None and not Path(self.file).expanduser().is_absolute():
            raise ValueError("a secret file is an absolute path (outside the project)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env is not None else f"file {self.file}"


SecretValue = str | SecretRef


def resolve(value: SecretValue, project: Path | None) -> str:
    """The secret itself, read now; ConfigError (one line, no secret in it) if it cannot be."""
    if isinstance(value, str):
        return value
    if value.env is not None:
        found = os.environ.get(value.env)
        if not found:
            raise ConfigError(f"the secret's environment variable {value.env} is not set in the daemon")
        return found
    path = Path(value.file or "").expanduser()
    if project is not None and _inside(path, project):
        raise ConfigError(f"the secret file {path} is inside the project; keep it outside the repository")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the secret file {path} cannot be read: {type(exc).__name__}") from None
    if not text:
        raise ConfigError(f"the secret file {path} is empty")
    return text


def _inside(path: Path, project: Path) -> bool:
    try:
        path.resolve().relative_to(project.resolve())
    except (OSError, ValueError):
        return False
    return True
