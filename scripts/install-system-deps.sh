#!/usr/bin/env bash
# Installs the system packages the workflow needs (ffmpeg/ffprobe decode MP4/AAC) when missing.
# Debian/Ubuntu: apt-get (as root, or with sudo). Elsewhere: says what to install.
set -euo pipefail

PACKAGES=(ffmpeg)
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "install-system-deps: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    echo "install-system-deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v brew >/dev/null 2>&1; then
    echo "install-system-deps: brew install ${missing[*]}"
    brew install "${missing[@]}"
else
    echo "install-system-deps: please install ${missing[*]} (${PACKAGES[*]}) with your package manager" >&2
    exit 1
fi
