"""Trust: a project's config is code, so the parts of it that act run only once trusted.

`.elsabro/config.json` is committed on purpose, so cloning a repository brings its config.
Its handlers run programs (`exec`), write files (`append`), send events out (`webhook`,
endpoints) and republish (`publish`); its retention removes events. All of that waits until
the user has trusted that exact content with `elsabro trust` (as direnv and mise do): the
SHA-256 of the file's bytes, recorded in the user's state dir (`trusted.json`, owner-only,
keyed by the project's real path). Any other change of the file needs trust again.

What never needs trust: redaction and limits (they only make what is stored safer), the bus
and snapshot settings. A config with nothing else needs no trust at all. The user's own
config (merged under every project's) is the user's, so it is trusted by definition and
kept out of the hash; a project cannot override one of its subscriptions while untrusted.

A `.elsabro/` or `config.json` that another user owns, that is a symbolic link, or that
group or others may write, is never trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from elsabro.config.files import CONFIG_FILE, merge, parse_json, read_json, validate
from elsabro.config.schema import ProjectConfig
from elsabro.core import durable
from elsabro.core.errors import ConfigError

TRUST_FILE = "trusted.json"


def how_to_trust(project: Path) -> str:
    return f"config of {project} is not trusted: run `elsabro trust` in it to run its handlers"


@dataclass(frozen=True)
class Loaded:
    """A project's config and what of it applies."""

    config: ProjectConfig  # what applies: without the project's handlers and retention if withheld
    needs_trust: bool  # the project's file asks for something that acts
    trusted: bool
    problem: str | None = None  # why it can never be trusted as it is (owner, mode, symlink)

    @property
    def withheld(self) -> bool:
        return self.needs_trust and not self.trusted

    def message(self, project: Path) -> str | None:
        """The one line that says why its handlers do not run and what to do, if they do not."""
        if not self.withheld:
            return None
        if self.problem:
            return f"config of {project} is not trusted: {self.problem}; its handlers do not run"
        return how_to_trust(project)


def withhold(data: dict[str, Any]) -> dict[str, Any]:
    """The parts of a project's config data that apply without trust."""
    safe = {key: value for key, value in data.items() if key != "subscriptions"}
    events = safe.get("events")
    if isinstance(events, dict):
        events = {key: value for key, value in events.items() if key != "webhooks"}
        store = events.get("store")
        if isinstance(store, dict):
            events["store"] = {key: value for key, value in store.items() if key != "retention"}
        safe["events"] = events
    return safe


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _foreign(info: os.stat_result, what: str, writable_bits: int = 0o022) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return f"{what} is a symbolic link"
    if info.st_uid != os.getuid():
        return f"{what} is owned by uid {info.st_uid}, not by you"
    if info.st_mode & writable_bits:
        return f"{what} is writable by group or others (chmod go-w it)"
    return None


def read_project_config(project: Path) -> tuple[bytes, str | None]:
    """The project's config bytes (empty when there is none), read once, and why they can never
    be trusted as they are, if so."""
    try:
        problem = _foreign(os.lstat(project / CONFIG_FILE.parent), ".elsabro/")
    except FileNotFoundError:
        return b"", None
    except OSError as exc:
        raise ConfigError(f"{project / CONFIG_FILE.parent}: {exc.strerror}") from None
    path = project / CONFIG_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", problem
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        # A symlink: still read (its redaction applies), never trusted.
        return _read_followed(path), problem or ".elsabro/config.json is a symbolic link"
    try:
        problem = problem or _foreign(os.fstat(fd), ".elsabro/config.json")
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(), problem
    finally:
        os.close(fd)


def _read_followed(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def load(project: Path, user_file: Path, state_dir: Path) -> Loaded:
    """The project's config, with what acts withheld unless the user trusted its content;
    ConfigError lists every mistake of the whole config."""
    raw, problem = read_project_config(project)
    data = parse_json(raw, project / CONFIG_FILE)
    user = read_json(user_file)
    full = validate(merge(user, data))
    safe = withhold(data)
    if safe == data:
        return Loaded(full, needs_trust=False, trusted=False)
    if problem is None and is_trusted(state_dir, project, raw):
        return Loaded(full, needs_trust=True, trusted=True)
    return Loaded(validate(merge(user, safe)), needs_trust=True, trusted=False, problem=problem)


# -- the record of trusted content, in the user's state dir ----------------------------------


def _key(project: Path) -> str:
    return os.path.realpath(project)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One writer of the record at a time (the CLI and a daemon that edits a config)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / f"{TRUST_FILE}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _records(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / TRUST_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(state_dir: Path, records: dict[str, Any]) -> None:
    data = json.dumps(records, indent=1, sort_keys=True).encode()
    durable.write_atomically(state_dir / TRUST_FILE, data, mode=0o600)


def is_trusted(state_dir: Path, project: Path, raw: bytes) -> bool:
    record = _records(state_dir).get(_key(project))
    return isinstance(record, dict) and record.get("sha256") == digest(raw)


def record(state_dir: Path, project: Path, raw: bytes) -> None:
    """Trust exactly this content of the project's config."""
    with _locked(state_dir):
        records = _records(state_dir)
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        records[_key(project)] = {"sha256": digest(raw), "trustedAt": when}
        _save(state_dir, records)


def revoke(state_dir: Path, project: Path) -> bool:
    """Forget the project's trust; False if it had none."""
    with _locked(state_dir):
        records = _records(state_dir)
        if records.pop(_key(project), None) is None:
            return False
        _save(state_dir, records)
        return True


def fix_modes(project: Path) -> None:
    """Take group and others' access off `.elsabro/` and their write off `config.json`, where they
    are the user's own (a clone under umask 002 makes them group-writable)."""
    directory, path = project / CONFIG_FILE.parent, project / CONFIG_FILE
    with contextlib.suppress(FileNotFoundError):
        info = os.lstat(directory)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(directory, 0o700)
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o022:
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022)


def trust(project: Path, user_file: Path, state_dir: Path) -> Loaded:
    """`elsabro trust`: record the current content as trusted, once it is valid and the user's own."""
    fix_modes(project)
    raw, problem = read_project_config(project)
    if problem:
        raise ConfigError(f"cannot trust the config of {project}: {problem}")
    validate(merge(read_json(user_file), parse_json(raw, project / CONFIG_FILE)))
    record(state_dir, project, raw)
    return load(project, user_file, state_dir)


def vouched(project: Path, raw: bytes, problem: str | None, state_dir: Path) -> bool:
    """Whether this content of the config is the user's: trusted, or asking for nothing that
    needs trust. elsabro's own edit of such a config keeps it trusted."""
    if problem:
        return False
    try:
        data = parse_json(raw, project / CONFIG_FILE)
    except ConfigError:
        return False
    return withhold(data) == data or is_trusted(state_dir, project, raw)
