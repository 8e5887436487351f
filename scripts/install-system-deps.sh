#!/usr/bin/env bash
# Installs the system packages the workflow (and, with --test, its tests) need, when missing:
#   ffmpeg/ffprobe   decode MP4/AAC (the workflow)
#   --test adds:
#   slurmctld slurmd slurm-client munge
#                    the single-node Slurm that tests/test_slurm.py starts (Debian/Ubuntu only;
#                    TALA_SKIP_SLURM=1 leaves them out). Nothing is configured or started here:
#                    tests/slurm/start.sh runs its own daemons and stops them after the tests.
#   chromium         headless browser that checks the report loads without console errors
#   espeak-ng        speech synthesis for the tests that speak (segmenting speech, the demo corpus)
# Debian/Ubuntu: apt-get (as root, or with sudo). Elsewhere: says what to install.
# Idempotent: a second run only checks. `make demo` runs it plain, `make test` with --test.
set -euo pipefail

tests=0
[ "${1:-}" = "--test" ] && tests=1
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)

if command -v apt-get >/dev/null 2>&1; then
    if [ "$tests" = 1 ]; then
        command -v chromium >/dev/null 2>&1 || missing+=(chromium)
        command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    fi
    if [ "$tests" = 1 ] && [ "${TALA_SKIP_SLURM:-0}" != "1" ]; then
        for pkg in slurmctld slurmd slurm-client munge; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
        done
    fi
    [ ${#missing[@]} -eq 0 ] && exit 0
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "install-system-deps: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    echo "install-system-deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    # The Slurm packages' own services need /etc/slurm/slurm.conf, which is not written: they stay off.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif [ ${#missing[@]} -eq 0 ]; then
    exit 0
elif command -v brew >/dev/null 2>&1; then
    echo "install-system-deps: brew install ${missing[*]}"
    brew install "${missing[@]}"
else
    echo "install-system-deps: please install ${missing[*]} with your package manager" >&2
    exit 1
fi
