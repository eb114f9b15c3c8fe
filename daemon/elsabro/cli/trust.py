"""`elsabro trust`: let a project's config run its handlers, or stop it (`--revoke`).

Parsing and printing only; config/trust.py decides and keeps the record.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elsabro.cli.context import Context


def cmd_trust(ctx: Context, args: argparse.Namespace) -> int:
    from elsabro.config import trust

    project, settings = Path(ctx.project), ctx.settings
    if args.revoke:
        revoked = trust.revoke(settings.state_dir, project)
        print(f"no longer trusted: {project}" if revoked else f"was not trusted: {project}")
        return 0
    if args.show:
        loaded = trust.load(project, settings.user_config_file, settings.state_dir)
        if not loaded.needs_trust:
            print(f"needs no trust (no handlers, endpoints or retention): {project}")
        elif loaded.trusted:
            print(f"trusted: {project}")
        else:
            print(loaded.message(project))
            return 1
        return 0
    loaded = trust.trust(project, settings.user_config_file, settings.state_dir)
    print(f"trusted: {project}" + ("" if loaded.needs_trust else " (its config needs no trust yet)"))
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "trust", help="let the project's config run its handlers (after reading it), or --revoke"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--revoke", action="store_true", help="stop running the project's handlers")
    action.add_argument("--show", action="store_true", help="say whether the project's config is trusted")
    parser.set_defaults(func=cmd_trust)
