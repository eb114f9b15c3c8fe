"""The shape of a project's configuration: every field, its default and its checks.

The `events` block is the seed's ("Configuración": `enabled`, `bus`, `store`, `webhooks`);
`subscriptions` lists what the daemon runs for this project. Durations keep the seed's
unit, milliseconds (`retryDelay`, `timeout`). `ProjectConfig.model_json_schema()` is what
`elsabro config schema` prints for editors; files.py reads and merges the files.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from elsabro.config.secrets import SecretValue, resolve
from elsabro.core.errors import UsageError
from elsabro.core.graphs import strongly_connected
from elsabro.core.redact import Rules, check_linear_pattern
from elsabro.core.topics import TopicIndex, check_pattern, check_topic, matches


class _Strict(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Retention(_Strict):
    """Old events to remove: more than `maxEvents` back, or older than `maxAge` (30d, 6m, 1y)."""

    max_events: int | None = Field(default=None, ge=1)
    max_age: str | None = Field(default=None, pattern=r"^\d+[dmy]$")
    archive: bool = Field(default=False, description="keep removed events gzipped in .elsabro/archive")


class Snapshots(_Strict):
    enabled: bool = True
    frequency: int = Field(default=100, ge=1)


class StoreConfig(_Strict):
    enabled: bool = True
    backend: Literal["file", "sqlite", "memory"] = Field(
        default="file", description="read when the daemon opens the project; a change needs a restart"
    )
    path: str = Field(default=".elsabro/events", description="relative to the project, and inside it")
    retention: Retention = Retention()
    snapshots: Snapshots = Snapshots()

    @field_validator("path")
    @classmethod
    def _path_inside(cls, value: str) -> str:
        return inside_project(value)


class BusConfig(_Strict):
    max_listeners: int = Field(default=100, ge=1)
    default_timeout: int = Field(default=30_000, ge=1, description="milliseconds")


class Signing(_Strict):
    enabled: bool = True
    algorithm: Literal["sha256", "sha512"] = "sha256"
    header: str = "X-Webhook-Signature"


class Retry(_Strict):
    max_attempts: int = Field(default=3, ge=1)
    backoff: Literal["linear", "exponential"] = "exponential"
    initial_delay: int = Field(default=1000, ge=0, description="milliseconds")
    max_delay: int = Field(default=30_000, ge=0, description="milliseconds")


class WebhookEndpoint(_Strict):
    """An HTTP endpoint that receives events, as the seed's WebhookEndpoint, plus its format."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    url: str = Field(pattern=r"^https?://", description="http or https; redirects are not followed")
    events: list[str] = Field(
        default=["*"], description="topics: `*` for all, `prefix.*`, or patterns with #"
    )
    secret: SecretValue | list[SecretValue] | None = Field(
        default=None,
        description='signing secret; several during a rotation (standard: whsec_...); {"env": NAME} or '
        '{"file": PATH} keeps it out of the committed file',
    )
    headers: dict[str, SecretValue] = Field(
        default={}, description='values may be {"env": NAME} or {"file": PATH}'
    )
    enabled: bool = True
    format: Literal["elsabro", "standard", "cloudevents"] = "elsabro"
    parallel: bool = Field(default=False, description="deliver several events at once, giving up log order")
    timeout: int = Field(default=30_000, ge=1, description="milliseconds per request")

    @model_validator(mode="after")
    def _standard_secrets(self) -> WebhookEndpoint:
        # Checked here, not at the first delivery: a bad key must not stop an endpoint later.
        if self.format == "standard":
            for secret in self.secret_values():
                if not isinstance(secret, str):
                    continue  # a reference is checked when it is read
                try:
                    base64.b64decode(secret.removeprefix("whsec_"), validate=True)
                except ValueError:
                    raise ValueError("a standard-format secret is whsec_ followed by base64") from None
        return self

    def secret_values(self) -> list[SecretValue]:
        if self.secret is None:
            return []
        return list(self.secret) if isinstance(self.secret, list) else [self.secret]

    def secrets(self, project: Path | None = None) -> list[str]:
        """The signing secrets, references read now (ConfigError if one cannot be)."""
        return [resolve(value, project) for value in self.secret_values()]

    def resolved_headers(self, project: Path | None = None) -> dict[str, str]:
        """The extra headers, references read now (ConfigError if one cannot be)."""
        return {name: resolve(value, project) for name, value in self.headers.items()}

    def literal_secrets(self) -> list[str]:
        """Where this endpoint keeps a secret as plain text in the file (for `config check`)."""
        found = ["secret" for value in self.secret_values() if isinstance(value, str)]
        found += [f"headers.{name}" for name, value in self.headers.items() if isinstance(value, str)]
        if urlsplit(self.url).password:
            found.append("url (its password)")
        return found


class WebhooksConfig(_Strict):
    enabled: bool = True
    endpoints: list[WebhookEndpoint] = []
    signing: Signing = Signing()
    retry: Retry = Retry()

    def endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)


class EventsConfig(_Strict):
    enabled: bool = True
    bus: BusConfig = BusConfig()
    store: StoreConfig = StoreConfig()
    webhooks: WebhooksConfig = WebhooksConfig()


class ExecHandler(_Strict):
    """Run a program (no shell) with the event JSON on stdin; exit 0 is success."""

    type: Literal["exec"]
    argv: list[str] = Field(min_length=1)
    cwd: str | None = Field(default=None, description="relative to the project, and inside it")
    env: dict[str, str] = {}

    @field_validator("cwd")
    @classmethod
    def _cwd_inside(cls, value: str | None) -> str | None:
        return value if value is None else inside_project(value)


class AppendHandler(_Strict):
    """Append the event as one JSON line to a file of the project."""

    type: Literal["append"]
    path: str = Field(min_length=1, description="relative to the project, and inside it")

    @field_validator("path")
    @classmethod
    def _path_inside(cls, value: str) -> str:
        return inside_project(value)


class PublishHandler(_Strict):
    """Republish the event under another topic: a derived event caused by the original."""

    type: Literal["publish"]
    topic: str

    @field_validator("topic")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _checked(check_topic, value)


class WebhookHandler(_Strict):
    """Deliver the event to one of `events.webhooks.endpoints`, in that endpoint's format."""

    type: Literal["webhook"]
    endpoint: str


Handler = Annotated[
    ExecHandler | AppendHandler | PublishHandler | WebhookHandler, Field(discriminator="type")
]
HANDLER_TYPES = ("exec", "append", "publish", "webhook")


class Options(_Strict):
    """The seed's subscription options."""

    queue: str | None = Field(default=None, description="subscriptions sharing a queue compete for events")
    durable: bool = Field(default=False, description="persist the cursor: resume after restarts")
    ack: Literal["auto", "manual"] = "auto"
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_delay: int = Field(default=1000, ge=0, description="milliseconds; doubled after every attempt")
    timeout: int = Field(default=30_000, ge=1, description="milliseconds per attempt")
    ack_wait: int = Field(default=30_000, ge=1, description="milliseconds to wait for a manual ack")


class Selection(_Strict):
    """What a subscriber receives: a topic or a pattern, a filter, and the seed's options."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    topic: str | None = None
    pattern: str | None = None
    filter: str | None = Field(
        default=None, description="a JMESPath expression over the event; truthy matches"
    )
    options: Options = Options()

    @model_validator(mode="after")
    def _one_selector(self) -> Selection:
        if (self.topic is None) == (self.pattern is None):
            raise ValueError("give exactly one of topic or pattern")
        if self.topic is not None:
            _checked(check_topic, self.topic)
        if self.pattern is not None:
            _checked(check_pattern, self.pattern)
        if self.filter is not None:
            try:
                jmespath.compile(self.filter)
            except JMESPathError as exc:
                raise ValueError(f"invalid filter: {str(exc).splitlines()[0]}") from None
            except RecursionError:
                raise ValueError("invalid filter: nested too deeply") from None
        return self

    @property
    def selector(self) -> str:
        return self.topic if self.topic is not None else self.pattern  # type: ignore[return-value]

    def selects(self, topic: str) -> bool:
        return matches(self.selector, topic)


class Subscription(Selection):
    """A subscription of the config: a selection and the handler that runs for it."""

    handler: Handler


class RedactionPattern(_Strict):
    name: str = Field(pattern=r"^[a-z0-9\-]{1,40}$", description="the kind the marker names")
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        check_linear_pattern(value)  # RE2: matched in linear time, or refused here with the reason
        return value


class RedactionConfig(_Strict):
    """Secrets are replaced before anything is stored; on by default."""

    enabled: bool = True
    patterns: list[RedactionPattern] = Field(default=[], description="extra detectors: [REDACTED:<name>]")
    drop_paths: list[str] = Field(default=[], description="dotted paths into the event to remove")
    hash_paths: list[str] = Field(default=[], description="dotted paths into the event to replace by a hash")

    def rules(self) -> Rules:
        return Rules(
            enabled=self.enabled,
            patterns=tuple((p.name, p.regex) for p in self.patterns),
            drop_paths=tuple(self.drop_paths),
            hash_paths=tuple(self.hash_paths),
        )


class Limits(_Strict):
    max_field_chars: int = Field(
        default=1024 * 1024, ge=1024, description="longer strings are cut; their size and SHA-256 are kept"
    )


class ProjectConfig(_Strict):
    """The whole of `.elsabro/config.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema")
    events: EventsConfig = EventsConfig()
    subscriptions: list[Subscription] = []
    redaction: RedactionConfig = RedactionConfig()
    limits: Limits = Limits()

    def rules(self) -> Rules:
        """What the log applies to every event before storing it."""
        return replace(self.redaction.rules(), max_field_chars=self.limits.max_field_chars)

    @model_validator(mode="after")
    def _consistent(self) -> ProjectConfig:
        problems = duplicate_names([s.name for s in self.subscriptions])
        problems += _publish_loops(self.subscriptions)
        ids = [e.id for e in self.events.webhooks.endpoints]
        problems += [
            f"webhook endpoint ids must be unique: {i}" for i in sorted(set(ids)) if ids.count(i) > 1
        ]
        problems += [
            f"subscription {s.name!r} names webhook endpoint {s.handler.endpoint!r}, which does not exist"
            for s in self.subscriptions
            if isinstance(s.handler, WebhookHandler) and s.handler.endpoint not in ids
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def inside_project(value: str) -> str:
    """A path that stays in the project as written: relative, no `..`. Symbolic links are
    checked when the handler runs (delivery/handlers.py), since one may be planted later."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if value.startswith(("/", "~")) or ".." in PurePosixPath(value).parts:
        raise ValueError(f"must be a path inside the project (relative, without ..), not {value!r}")
    return value


def _checked(check: Any, value: str) -> str:
    try:
        check(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    return value


def duplicate_names(names: list[Any]) -> list[str]:
    duplicates = sorted({str(n) for n in names if names.count(n) > 1})
    return [f"subscription names must be unique: {', '.join(duplicates)}"] if duplicates else []


def _publish_loops(subscriptions: list[Subscription]) -> list[str]:
    """A publish handler whose output can reach itself again would loop forever.

    The publishers form a graph (an edge from each to every publisher that selects the
    topic it publishes); one is on a loop when it lies in a strongly connected component
    of more than one publisher, or selects its own topic. Tarjan's algorithm, iterative so
    that a long chain cannot exhaust the stack: linear in the edges, which are computed once.
    """
    publishers = [s for s in subscriptions if isinstance(s.handler, PublishHandler)]
    names = list(dict.fromkeys(s.name for s in publishers))  # duplicates are reported elsewhere
    selecting: TopicIndex[str] = TopicIndex()
    for s in publishers:
        selecting.add(s.selector, s.name)
    edges: dict[str, set[str]] = {name: set() for name in names}
    for s in publishers:
        edges[s.name].update(selecting.lookup(s.handler.topic))  # type: ignore[union-attr]
    looping = {name for name in names if name in edges[name]}
    for component in strongly_connected(names, edges):
        if len(component) > 1:
            looping.update(component)
    return [f"subscription {name!r} republishes into itself (a loop)" for name in names if name in looping]


def one_line(exc: ValidationError) -> str:
    """The first problem, and how many more: the one-line error of a refused request."""
    problems = describe(exc)
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def describe(exc: ValidationError, prefix: str = "") -> list[str]:
    """Each error as `json.path: what is wrong`, with the path as written in the file."""
    lines = []
    for error in exc.errors():
        parts: list[str] = []
        for part in map(str, error["loc"]):
            if part.startswith("function-after") or (parts[-1:] == ["handler"] and part in HANDLER_TYPES):
                continue  # pydantic's own steps (validators, the union's tag), not keys of the file
            parts.append(part)
        path = prefix + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path or '(top level)'}: {message}")
    return lines
