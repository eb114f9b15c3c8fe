#!/bin/sh
# Install elsabro for this user and start it.
#
#   1. a virtual environment in ${XDG_DATA_HOME:-~/.local/share}/elsabro/venv with elsabro in it
#   2. the `elsabro` command linked into ~/.local/bin
#   3. the hooks, each event registered exactly once, chosen for the installed Claude Code
#      (`claude --version`): with `claude` on the PATH the plugin (marketplace = this checkout)
#      carries the events every version sends to plugins, and ~/.claude/settings.json only the
#      rest (CwdChanged, which plugins never get, and events newer than 2.1.197); without
#      `claude` (and no plugin installed before) settings carry them all
#   4. the daemon started, and a test event sent through the real hook as proof
#
# Needs python3 (3.10+) and curl. Running it again changes nothing.
set -eu

repo=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}/elsabro
venv=$data/venv
bindir=$HOME/.local/bin

say() { printf 'elsabro: %s\n' "$*"; }

command -v python3 >/dev/null || { say "python3 is required"; exit 1; }
command -v curl >/dev/null || { say "curl is required (the hook uses it)"; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { say "python3 3.10 or newer is required"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
fi
say "installing elsabro into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$repo"

mkdir -p "$bindir"
ln -sf "$venv/bin/elsabro" "$bindir/elsabro"
case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "add $bindir to your PATH to use the elsabro command" ;;
esac
elsabro=$venv/bin/elsabro

if command -v claude >/dev/null; then
    say "registering the Claude Code plugin"
    claude plugin marketplace add "$repo" >/dev/null
    claude plugin install elsabro@elsabro >/dev/null
else
    say "claude not found: the hooks go to ~/.claude/settings.json"
fi
# Settings get what the plugin (if installed, now or before) does not carry: never both for one event.
"$elsabro" hooks install --user

"$elsabro" daemon start
mkdir -p "$data/selftest"
"$elsabro" --project "$data/selftest" doctor
say "done: run 'elsabro tail -f' in a project to watch its sessions"
