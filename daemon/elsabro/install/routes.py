"""Where elsabro's hook is registered for each event, and whether that fits the Claude Code installed.

Two routes reach the forwarder: the plugin (its hooks.json names versions.PLUGIN_EVENTS) and
settings files (`~/.claude/settings.json`, `<project>/.claude/settings.json`). Each event must
be registered exactly once: twice and every such event is stored twice; never and it is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elsabro.install import claude, versions


@dataclass
class Registration:
    profile: versions.Profile
    plugin: bool
    where: dict[str, list[str]] = field(default_factory=dict)  # event -> routes, one per registration

    @property
    def routes(self) -> list[str]:
        seen: list[str] = []
        for places in self.where.values():
            seen += [place for place in places if place not in seen]
        return seen

    def duplicates(self) -> dict[str, list[str]]:
        return {event: places for event, places in self.where.items() if len(places) > 1}

    def missing(self) -> list[str]:
        return [event for event in self.profile.events if event not in self.where]

    def unfit(self) -> list[str]:
        """Registered events the installed version does not know (the version must be known)."""
        if self.profile.version is None:
            return []
        return sorted(event for event in self.where if event not in self.profile.events)


def inspect(project: Path, home: Path | None, version: tuple[int, int, int] | None) -> Registration:
    found = Registration(versions.profile(version), claude.plugin_installed(home))
    if found.plugin:
        for event in versions.PLUGIN_EVENTS:
            found.where.setdefault(event, []).append("plugin")
    paths = [claude.settings_path("user", project, home), claude.settings_path("project", project, home)]
    for path in dict.fromkeys(paths):  # a project at $HOME has one file for both scopes
        for event, count in claude.registration_counts(path).items():
            found.where.setdefault(event, []).extend([str(path)] * count)
    return found
