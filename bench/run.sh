#!/bin/bash
# Container start, side by side in one hyperfine run on the same busybox rootfs:
#   berth run --rm --network none IMG true
#   runc run (a bundle of the same rootfs; runc's default spec has its own network namespace)
#   docker run --rm --network none IMG true   (Debian's docker.io engine, started here)
#   podman run --rm --network none IMG true   (when it can run on this host)
# The commands run in that order, round after round is not possible with hyperfine, so
# compare ratios from one run rather than absolute times across runs.
# plus the resident memory of a detached container's monitor.
# Usage: bench/run.sh BERTH BUSYBOX_ROOTFS_TAR. Needs root, hyperfine, runc; docker.io and
# podman are optional (skipped with a note when absent).
set -euo pipefail
berth=$(realpath "$1")
tar=$(realpath "$2")
runs=${RUNS:-30}
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
export BERTH_ROOT=$work/berth BERTH_RUN=$work/berth-run BERTH_CGROUP_PARENT=berth-bench
dockerd_pid=
cleanup() {
    "$berth" ps -a -q --no-trunc 2>/dev/null | xargs -r -n1 "$berth" rm -f >/dev/null 2>&1 || true
    if [ -n "$dockerd_pid" ]; then
        DOCKER_HOST=unix://$work/docker.sock docker rmi -f berth-bench >/dev/null 2>&1 || true
        kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null || true
    fi
    podman rmi -f berth-bench >/dev/null 2>&1 || true
    umount -R "$work/docker" 2>/dev/null || true
    for d in "${cgdirs[@]:-}"; do [ -n "$d" ] && rmdir "$d" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "# berth $("$berth" --version), runc $(runc --version | head -1 | awk '{print $3}'), $(hyperfine --version)"
"$berth" import "$tar" bench:latest >/dev/null

mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$tar"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"))
PY

# The limit berth is measured against: the same namespaces and root with nothing else,
# and that plus what the kernel charges to move a process into the cgroups a berth
# container joins by default (v1: devices and memory; v2: its one cgroup). On cgroup v1
# each cgroup.procs write waits for an RCU grace period.
rootfs=$work/bundle/rootfs
bare="unshare --fork --pid --mount --uts --ipc --net chroot $rootfs /bin/true"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cgdirs=(/sys/fs/cgroup/berth-bench-bare)
else
    cgdirs=(/sys/fs/cgroup/devices/berth-bench-bare /sys/fs/cgroup/memory/berth-bench-bare)
fi
mkdir -p "${cgdirs[@]}"
join=""
for d in "${cgdirs[@]}"; do join+="echo \$\$ > $d/cgroup.procs; "; done
commands=(-n "unshare + chroot (bare)" "$bare"
          -n "bare + cgroup join" "sh -c '${join}exec $bare'"
          -n "berth" "$berth run --rm --network none bench:latest true"
          -n "runc" "runc --root $work/runc run --bundle $work/bundle bench")
# BERTH_BEFORE=path: an older berth binary, measured in the same run.
if [ -n "${BERTH_BEFORE:-}" ]; then
    commands+=(-n "berth (before)" "$BERTH_BEFORE run --rm --network none bench:latest true")
fi

# Debian's client, matching its engine (a newer client may sit earlier in PATH).
docker=/usr/bin/docker
if command -v dockerd >/dev/null && [ -x "$docker" ]; then
    dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
        --pidfile "$work/docker.pid" --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 100); do DOCKER_HOST=unix://$work/docker.sock $docker info >/dev/null 2>&1 && break; sleep 0.2; done
    export DOCKER_HOST=unix://$work/docker.sock
    $docker import "$tar" berth-bench >/dev/null
    commands+=(-n "docker" "$docker run --rm --network none berth-bench true")
else
    echo "note: docker.io is not installed; docker skipped"
fi

if command -v podman >/dev/null; then
    podman import "$tar" berth-bench >/dev/null 2>&1 || true
    # podman asks for rlimits above this host's hard limits unless told otherwise
    # (and this host denies CAP_SYS_RESOURCE), hence the explicit ulimits.
    podman_run="podman run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 berth-bench true"
    if $podman_run >/dev/null 2>&1; then
        commands+=(-n "podman" "$podman_run")
    else
        echo "note: podman cannot run containers here: $($podman_run 2>&1 | tail -1)"
    fi
fi

hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/start.md" "${commands[@]}" >&2
echo
echo "## Container start (hyperfine, $runs runs)"
cat "$work/start.md"

id=$("$berth" run -d bench:latest sleep 60)
monitor=$("$berth" inspect "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["MonitorPid"])')
echo
echo "## Detached container's monitor"
echo "VmRSS of the monitor (pid $monitor): $(awk '/VmRSS/ {print $2, $3}' "/proc/$monitor/status")"
"$berth" rm -f "$id" >/dev/null
