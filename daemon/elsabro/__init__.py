"""elsabro: an event pipeline for coding agents.

A Claude Code hook plugin plus a sidecar daemon that appends every lifecycle event of a
coding session to the project's own durable log in `.elsabro/events`. From Python:

    from elsabro import EventBus

    async with EventBus() as bus:
        await bus.publish("build.done", {"ok": True})

The public names are loaded on first use: the CLI imports this package on every call
and must not pay for the bus (httpx alone is tens of milliseconds).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elsabro.bus.api import EventBus, SubscribeOptions, Subscription
    from elsabro.core.errors import (
        BadRequest,
        DaemonNotRunning,
        ElsabroError,
        EventTimeout,
        HandlerError,
        LogInUse,
        UsageError,
    )
    from elsabro.core.model import Event, StoredEvent
    from elsabro.core.settings import Settings

__version__ = "0.1.0"

# Where each public name lives.
_HOMES = {
    "EventBus": "bus.api",
    "Subscription": "bus.api",
    "SubscribeOptions": "bus.api",
    "Event": "core.model",
    "StoredEvent": "core.model",
    "Settings": "core.settings",
    "ElsabroError": "core.errors",
    "UsageError": "core.errors",
    "BadRequest": "core.errors",
    "HandlerError": "core.errors",
    "EventTimeout": "core.errors",
    "DaemonNotRunning": "core.errors",
    "LogInUse": "core.errors",
}

__all__ = [
    "BadRequest",
    "DaemonNotRunning",
    "ElsabroError",
    "Event",
    "EventBus",
    "EventTimeout",
    "HandlerError",
    "LogInUse",
    "Settings",
    "StoredEvent",
    "SubscribeOptions",
    "Subscription",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'elsabro' has no attribute {name!r}")
