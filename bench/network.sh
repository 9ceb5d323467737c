#!/bin/bash
# Networking, side by side:
#  1. `run --rm IMG true` with bridge networking vs --network none (berth), and docker's
#     bridge run, in one hyperfine run;
#  2. HTTP throughput (wrk) to the same busybox httpd through a published port on
#     127.0.0.1, berth vs docker.
# dockerd runs in a network namespace of its own (bench/dockerd.sh).
# Usage: bench/network.sh BERTH BUSYBOX_ROOTFS_TAR. Needs root, hyperfine, wrk, docker.io.
set -euo pipefail
berth=$(realpath "$1")
tar=$(realpath "$2")
runs=${RUNS:-30}
duration=${DURATION:-10}
work=$(mktemp -d /tmp/berth-bench-net.XXXXXX)
ns="berth-bench-docker"
# shellcheck source=bench/dockerd.sh
. "$(dirname "$0")/dockerd.sh"
export BERTH_ROOT=$work/berth BERTH_RUN=$work/berth-run BERTH_CGROUP_PARENT=berth-bench \
    BERTH_BRIDGE=bbench0 BERTH_BRIDGE_SUBNET=10.222.0.0/24 BERTH_NFT_TABLE=berth_bench
cleanup() {
    "$berth" ps -a -q --no-trunc 2>/dev/null | xargs -r -n1 "$berth" rm -f >/dev/null 2>&1 || true
    [ -z "$dockerd_pid" ] || $docker rm -f web >/dev/null 2>&1 || true
    dockerd_stop
    ip link del bbench0 2>/dev/null || true
    nft delete table inet berth_bench 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$berth" import "$tar" bench:latest >/dev/null
dockerd_start $ns
$docker import "$tar" berth-bench >/dev/null
# First runs create the bridges.
"$berth" run --rm bench:latest true
$docker run --rm berth-bench true

hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/start.md" \
    -n "berth --network none" "$berth run --rm --network none bench:latest true" \
    -n "berth (bridge)" "$berth run --rm bench:latest true" \
    -n "docker (bridge)" "$docker run --rm berth-bench true" >&2
echo "## run --rm true: bridge vs none ($runs runs)"
cat "$work/start.md"

"$berth" run -d --name web -p 18000:5000 bench:latest httpd -f -p 5000 -h /var/www >/dev/null
$docker run -d --name web -p 18000:5000 berth-bench httpd -f -p 5000 -h /var/www >/dev/null
sleep 1
echo
echo "## HTTP through a published port on 127.0.0.1 (wrk -t2 -c32 -d${duration}s, busybox httpd)"
b=$(wrk -t2 -c32 -d"${duration}s" http://127.0.0.1:18000/index.html | awk '/Requests\/sec/ {print $2}')
d=$(nsenter --net=/run/netns/$ns wrk -t2 -c32 -d"${duration}s" http://127.0.0.1:18000/index.html | awk '/Requests/ && /sec/ {print $2}')
echo "| | requests/s |"
echo "| --- | ---: |"
echo "| berth (nft DNAT) | $b |"
echo "| docker (docker-proxy) | $d |"
echo "ratio berth/docker: $(python3 -c "print(round($b/$d, 2))")"
