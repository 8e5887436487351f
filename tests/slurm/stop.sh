#!/usr/bin/env bash
# Stops what tests/slurm/start.sh started (by the PID files under $TALA_SLURM_DIR), nothing else.
# Safe to run twice or when nothing runs. `--purge` also removes the state folder.
set -uo pipefail

DIR="${TALA_SLURM_DIR:-/tmp/tala-slurm}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"

stop() {
    local pidfile="$1" pid
    [ -s "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if $SUDO kill -0 "$pid" 2>/dev/null; then
        $SUDO kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        $SUDO kill -0 "$pid" 2>/dev/null && $SUDO kill -KILL "$pid" 2>/dev/null
    fi
    $SUDO rm -f "$pidfile"
}

if [ -d "$DIR" ]; then
    # Jobs still queued or running die with slurmd (its steps are its children).
    [ -s "$DIR/slurmctld.pid" ] && SLURM_CONF="$DIR/slurm.conf" scancel --quiet --full --state=RUNNING,PENDING -u "$(id -un)" 2>/dev/null
    stop "$DIR/slurmd.pid"
    stop "$DIR/slurmctld.pid"
    stop "$DIR/munge/munged.pid"
    if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ]; then
        $SUDO rm -f /etc/slurm/slurm.conf
    fi
    [ "${1:-}" = "--purge" ] && $SUDO rm -rf "$DIR"
fi
exit 0
