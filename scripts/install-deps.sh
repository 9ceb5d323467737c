#!/bin/bash
# Installs, as root, the Debian packages `make demo` or `make test` needs that are
# missing (nothing when all are there), and for `test` the rustfmt and clippy components.
#   scripts/install-deps.sh demo|test
set -euo pipefail

# mmdebstrap: the Python base; nftables: berth's rules; iproute2: networking; curl: the
# demo's client.
demo=(mmdebstrap nftables iproute2 curl ca-certificates)
# busybox-static: the test base image; podman, skopeo, umoci, buildah, docker.io: interop
# checks (tests start their own dockerd); runc: the reference runtime; gcc, libc6-dev: a
# static UDP echo server; docker-registry, apache2-utils, openssl: the registry tests'
# own registries, passwords and certificates.
test=("${demo[@]}" busybox-static podman skopeo umoci runc docker.io buildah gcc libc6-dev
    docker-registry apache2-utils openssl)

case "${1:-}" in
demo) want=("${demo[@]}") ;;
test) want=("${test[@]}") ;;
*) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing ${missing[*]}: run as root, or apt-get install them" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$1" = test ] && command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
