"""Retention: removing old events as `events.store.retention` asks, and never too many.

`maxEvents` keeps at least that many of the newest events; `maxAge` (`30d`, `6m`, `1y`;
a month counts 30 days, a year 365) lets older events go. Either one makes an event
removable. Whatever they say, an event a durable subscription or webhook endpoint has
not handled yet stays (as of its last checkpointed cursor, which is where it resumes
after a crash). The store removes what is allowed in its own units (the file store:
whole segments, never the one being written) and keeps a record of it, so the hash
chain still verifies from the first event left.

`elsabro cleanup` runs it at once; the daemon runs it every `retention_interval_s`
(`Project.apply_retention`).
"""

from __future__ import annotations

from elsabro.config.schema import Retention
from elsabro.core.clock import format_time
from elsabro.store.base import Cut

_UNIT_S = {"d": 86_400, "m": 30 * 86_400, "y": 365 * 86_400}


def age_cutoff(max_age: str, now_s: float) -> str:
    """The UTC ISO time before which events are older than `max_age`."""
    return format_time(now_s - int(max_age[:-1]) * _UNIT_S[max_age[-1]])


def plan(retention: Retention, head: int, keep_from: int, now_s: float) -> Cut | None:
    """What may go under this policy, or None if the policy keeps everything."""
    if retention.max_events is None and retention.max_age is None:
        return None
    older_than = age_cutoff(retention.max_age, now_s) if retention.max_age else None
    return Cut(keep_from=keep_from, max_events=retention.max_events, older_than=older_than, head=head)
