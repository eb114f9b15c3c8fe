#!/bin/sh
# elsabro hook forwarder: a Claude Code hook's JSON on stdin -> the elsabro daemon.
#
# POSIX sh (Claude Code runs hooks with /bin/sh, dash on Debian): no bash-isms and no
# interpreter start-up per event. It prints nothing (Claude Code feeds the stdout of some
# hooks to the model) and always exits 0: a broken elsabro never breaks or blocks a session.
#
# The hook keeps its payload until the daemon says it is stored. It first writes stdin to
# <project>/.elsabro/spool/.<ns>-<pid>.tmp (owner-only), then:
# Daemon up:   one curl over the Unix socket, naming the delivery <ns>-<pid>. A 2xx answer
#              means stored and fsynced (or spooled by the daemon itself); the daemon has
#              removed the copy by then (one process less per event than an rm here).
# Otherwise:   no answer in time, an error, no daemon, no private socket: the copy is
#              fsynced and renamed to <ns>-<pid>.json, and the daemon is started fully
#              detached; it drains the spool in order. One delivery id for both paths: a
#              delivery the daemon stored late (after this hook gave up) is not stored twice.
#
# The socket path rule is the one elsabro's Python side uses (settings.py):
#   $ELSABRO_SOCKET, else $XDG_RUNTIME_DIR/elsabro/daemon.sock, else $HOME/.local/state/elsabro/daemon.sock
# With none of the three there is no private place for a socket (a path under /tmp would be
# shared by every user): the event is spooled. A socket owned by another user is never used.

exec 1>/dev/null 2>/dev/null
umask 077

if [ -n "$ELSABRO_SOCKET" ]; then
    sock=$ELSABRO_SOCKET
elif [ -n "$XDG_RUNTIME_DIR" ]; then
    sock=$XDG_RUNTIME_DIR/elsabro/daemon.sock
elif [ -n "$HOME" ]; then
    sock=$HOME/.local/state/elsabro/daemon.sock
else
    sock=
fi
project=${CLAUDE_PROJECT_DIR:-$PWD}
spool=$project/.elsabro/spool

# Nanoseconds name the delivery: the drain order is the order the hooks ran.
# (macOS date has no %N: seconds then, and the pid breaks ties.)
now=$(date +%s%N)
case $now in *N | '') now="$(date +%s)000000000" ;; esac
id=$now-$$
tmp=$spool/.$id.tmp

start_daemon() {
    # At most one start attempt per 10 s: a broken install must not spawn a process per event.
    [ -n "$sock" ] || return
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

# Ours and listening: a socket file owned by another user is someone else's listener.
ours() {
    [ -n "$sock" ] && [ -S "$sock" ] && [ -O "$sock" ]
}

send() {  # $1: what curl reads (a file, or - for stdin)
    curl -q -sf -o /dev/null --connect-timeout 0.3 --max-time 0.6 --unix-socket "$sock" -X POST -T "$1" \
        -H "Elsabro-Project: $project" -H "Elsabro-Delivery: $id" -H "Content-Type: application/json" \
        -H "Expect:" http://elsabro/v1/hook
}

# The first hook of a project may come before any daemon opened it: keep the payloads out of git
# as the daemon does (the same .elsabro/.gitignore, written only where there is none).
new_spool() {
    [ -d "$project" ] || return 1  # a directory that is gone is no project to make again
    mkdir -p "$spool" || return
    [ -e "$project/.elsabro/.gitignore" ] ||
        printf '# Written by elsabro: the event log and its working files stay out of git.\n*\n!.gitignore\n!config.json\n!config.schema.json\n' \
            >"$project/.elsabro/.gitignore"
    return 0
}

# Keep the payload. No fsync yet: it costs only when the copy has to stay.
if ! { [ -d "$spool" ] || new_spool; } || ! : >"$tmp"; then
    # No room to keep it (an unwritable project): the daemon is the only chance.
    ours && send -
    exit 0
fi
if ! cat >"$tmp" || ! [ -s "$tmp" ]; then
    rm -f "$tmp"
    exit 0
fi

if ours && send "$tmp"; then
    # The daemon removes the copy once the event is safe; a daemon from before that does not.
    [ -e "$tmp" ] && rm -f "$tmp"
    exit 0
fi
# Not acknowledged as stored: the kept copy becomes a spool file (fsynced before its name).
dd if="$tmp" of="$tmp" conv=notrunc,fsync status=none
mv -f "$tmp" "$spool/$id.json"
start_daemon
exit 0
