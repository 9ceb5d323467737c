#!/bin/sh
# Writes a tarball of a minimal Debian bookworm root filesystem with Python 3, venv,
# Flask and gunicorn (the base of examples/microblog), made by mmdebstrap from Debian's
# mirror. Docs, man pages, locales and apt's lists and caches are left out.
# Usage: base-python.sh OUT.tar   (does nothing if OUT.tar exists: remove it to rebuild)
# MIRROR and SECURITY_MIRROR name other mirrors; run as root (mmdebstrap --mode=root).
set -eu
out=${1:?usage: base-python.sh OUT.tar}
if [ -e "$out" ]; then
    echo "base-python.sh: $out exists ($(du -h "$out" | cut -f1)); remove it to rebuild"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "base-python.sh: installing mmdebstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap
fi
mirror=${MIRROR:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=python3,python3-venv,python3-flask,gunicorn,passwd

# Written next to OUT and renamed at the end, so an interrupted run leaves no OUT.
partial="$out.partial"
rm -f "$partial"
trap 'rm -f "$partial"' EXIT
start=$(date +%s)
# The merged-usr hook makes the merged-/usr links itself, so apt takes usr-is-merged
# rather than the usrmerge package (and the full perl it needs).
# The --customize-hook strings are run by mmdebstrap's shell, with $1 the new root.
# shellcheck disable=SC2016
mmdebstrap --mode=root --variant=minbase --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/debconf/*-old' \
    bookworm "$partial" \
    "deb $mirror bookworm main" \
    "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main"
mv "$partial" "$out"
trap - EXIT
echo "base-python.sh: wrote $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
