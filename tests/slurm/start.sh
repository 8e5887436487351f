#!/usr/bin/env bash
# Starts a private single-node Slurm on loopback for the tests: our own munged (own key and
# socket), slurmctld and slurmd, all state, logs and PID files under $TALA_SLURM_DIR.
# Prints the line `export SLURM_CONF=...` that clients (sbatch, squeue, the executor plugin) need.
# Idempotent: daemons whose PID file points at a live process are left running. Needs root (or
# passwordless sudo) for slurmd and for the fake GPU device node; never touches /etc/slurm or the
# system's munged. Stop it with tests/slurm/stop.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${TALA_SLURM_DIR:-/tmp/tala-slurm}"
CTLD_PORT="${TALA_SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${TALA_SLURM_SLURMD_PORT:-16818}"
NODE=localhost

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || { echo "slurm/start.sh: needs root or passwordless sudo" >&2; exit 2; }
    SUDO="sudo -n"
fi
for tool in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$tool" >/dev/null 2>&1 || { echo "slurm/start.sh: $tool not installed (scripts/install-system-deps.sh)" >&2; exit 2; }
done

alive() { [ -s "$1" ] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null; }

$SUDO mkdir -p "$DIR"/{state,spool,log,munge,dev}
$SUDO chmod 755 "$DIR"

# munged refuses keys and sockets that others could write; it runs as the munge user.
MUNGE_USER="$(id -un munge 2>/dev/null || id -un)"
if [ ! -s "$DIR/munge/munge.key" ]; then
    $SUDO dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
fi
$SUDO chown -R "$MUNGE_USER" "$DIR/munge"
$SUDO chmod 711 "$DIR/munge"
$SUDO chmod 400 "$DIR/munge/munge.key"
if ! alive "$DIR/munge/munged.pid"; then
    $SUDO rm -f "$DIR/munge/munge.socket"*
    if [ -z "$SUDO" ]; then AS_MUNGE=(runuser -u "$MUNGE_USER" --); else AS_MUNGE=(sudo -n -u "$MUNGE_USER"); fi
    "${AS_MUNGE[@]}" munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
fi

# A GPU gres needs a device file; character devices with NVIDIA's major number are enough for
# Slurm to hand out two GPUs, one a job, and set CUDA_VISIBLE_DEVICES to 0 or 1 (nothing ever
# opens them).
for i in 0 1; do
    [ -e "$DIR/dev/nvidia$i" ] || $SUDO mknod "$DIR/dev/nvidia$i" c 195 "$i"
done

# slurmd takes the configured sizes (config_overrides): at least the 4 CPUs that the slurm-gpu
# profile's group jobs ask for, even on a 2-core CI machine, and memory that is not a consumable
# here (CR_Core), so that rules asking for more than the machine has still schedule.
CPUS="$(nproc)"
[ "$CPUS" -ge 4 ] || CPUS=4
MEM_MB=65536
sed -e "s|@DIR@|$DIR|g" -e "s|@NODE@|$NODE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@USER@|$(id -un)|g" \
    "$HERE/slurm.conf.in" | $SUDO tee "$DIR/slurm.conf" >/dev/null
sed -e "s|@DIR@|$DIR|g" -e "s|@NODE@|$NODE|g" "$HERE/gres.conf.in" | $SUDO tee "$DIR/gres.conf" >/dev/null
$SUDO install -m 755 "$HERE/task_prolog.sh" "$DIR/task_prolog.sh"
if ! alive "$DIR/slurmctld.pid"; then
    # A fresh controller (started with -c, no old jobs) starts fresh job records too.
    $SUDO rm -f "$DIR/log/task_env.log" "$DIR/log/jobcomp.log"
fi
$SUDO touch "$DIR/log/task_env.log"
$SUDO chmod 666 "$DIR/log/task_env.log"
$SUDO chmod 644 "$DIR/slurm.conf" "$DIR/gres.conf"
export SLURM_CONF="$DIR/slurm.conf"

# The executor plugin runs each job through `srun` with SLURM_* variables removed, SLURM_CONF
# included, so srun inside a job reads the default /etc/slurm/slurm.conf: point it at ours while
# this cluster runs (stop.sh removes the link; an existing configuration is never replaced).
SYSTEM_CONF=/etc/slurm/slurm.conf
if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ]; then
    :
elif [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    echo "slurm/start.sh: $SYSTEM_CONF exists (a real Slurm here?): not starting a test cluster beside it" >&2
    exit 2
else
    $SUDO mkdir -p /etc/slurm
    $SUDO ln -s "$SLURM_CONF" "$SYSTEM_CONF"
fi

alive "$DIR/slurmctld.pid" || $SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -c
alive "$DIR/slurmd.pid" || $SUDO env SLURM_CONF="$SLURM_CONF" slurmd -N "$NODE"

# Ready when the node is idle in both partitions (a start from scratch takes a few seconds).
for _ in $(seq 1 60); do
    state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null | sort -u | tr '\n' ' ')"
    case "$state" in
        "idle "|"mix "|"alloc ") echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
        *drain*|*down*) $SUDO env SLURM_CONF="$SLURM_CONF" scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
echo "slurm/start.sh: node $NODE not ready (state: ${state:-none}); logs in $DIR/log" >&2
exit 1
