"""elsabro: an event pipeline for coding agents.

A Claude Code hook plugin plus a sidecar daemon that appends every lifecycle event of a
coding session to the project's own durable log in `.elsabro/events`.
"""

from __future__ import annotations

__all__: list[str] = []
