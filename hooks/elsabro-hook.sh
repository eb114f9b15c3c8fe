#!/bin/sh
# elsabro hook forwarder: a Claude Code hook's JSON on stdin -> the elsabro daemon.
#
# POSIX sh (Claude Code runs hooks with /bin/sh, dash on Debian): no bash-isms and no
# interpreter start-up per event. It prints nothing (Claude Code feeds the stdout of some
# hooks to the model) and always exits 0: a broken elsabro never breaks or blocks a session.
#
# Daemon up:   one curl over the Unix socket; the daemon answers once the event is fsynced
#              (or, when it cannot store it now, once it has spooled it itself).
# Daemon down: the payload is written to <project>/.elsabro/spool/<ns>-<pid>.json
#              (temporary name, fsync, rename; owner-only) and the daemon is started fully
#              detached; it drains the spool in order, exactly once.
#
# The socket path rule is the one elsabro's Python side uses (settings.py):
#   $ELSABRO_SOCKET, else $XDG_RUNTIME_DIR/elsabro/daemon.sock, else $HOME/.local/state/elsabro/daemon.sock

exec 1>/dev/null 2>/dev/null
umask 077

sock=${ELSABRO_SOCKET:-${XDG_RUNTIME_DIR:-${HOME:-/tmp}/.local/state}/elsabro/daemon.sock}
project=${CLAUDE_PROJECT_DIR:-$PWD}
spool=$project/.elsabro/spool

# Nanoseconds name the spool file: the drain order is the order the hooks ran.
# (macOS date has no %N: seconds then, and the pid breaks ties.)
stamp() {
    now=$(date +%s%N)
    case $now in *N | '') now="$(date +%s)000000000" ;; esac
}

start_daemon() {
    # At most one start attempt per 10 s: a broken install must not spawn a process per event.
    run_dir=${sock%/*}
    marker=$run_dir/start.${now%??????????}
    [ -d "$marker" ] && return
    mkdir -p "$run_dir" && chmod 700 "$run_dir" && mkdir "$marker" || return
    bin=${ELSABRO_BIN:-$(command -v elsabro)}
    [ -n "$bin" ] || bin=${XDG_DATA_HOME:-$HOME/.local/share}/elsabro/venv/bin/elsabro
    [ -x "$bin" ] || return
    if command -v setsid >/dev/null; then
        setsid "$bin" --project "$project" daemon run --quiet </dev/null >/dev/null 2>&1 &
    else
        "$bin" --project "$project" daemon run --quiet </dev/null >/dev/null 2>&1 &
    fi
}

spool_file() {  # what is left on stdin into the spool
    [ -d "$spool" ] || mkdir -p "$spool" || exit 0
    stamp
    tmp=$spool/.$now-$$.tmp
    dd of="$tmp" conv=fsync status=none && [ -s "$tmp" ] || { rm -f "$tmp"; exit 0; }
    mv -f "$tmp" "$spool/$now-$$.json"
    start_daemon
}

# -T - streams stdin only once connected: when the daemon is gone (a stale socket) curl
# fails before reading it, and the whole payload is still there for the spool. Once the
# daemon has the request it owns the event (stored, or spooled by the daemon itself), so
# a late failure leaves nothing on stdin and nothing to spool. "Expect:" stops curl from
# waiting for a 100-continue.
if [ -S "$sock" ]; then
    curl -q -sf -o /dev/null --connect-timeout 0.3 --max-time 0.6 --unix-socket "$sock" -X POST -T - \
        -H "Elsabro-Project: $project" -H "Content-Type: application/json" -H "Expect:" \
        http://elsabro/v1/hook && exit 0
fi
spool_file
exit 0
