# shellcheck shell=bash disable=SC2154  # $work is the sourcing script's
# Sourced by the benchmarks: a dockerd of their own (Debian's engine) in a network
# namespace of its own (nsenter: `ip netns exec` would hide the host's cgroup mounts), so
# its bridge and iptables rules (and its FORWARD policy) never touch the host's.
# Uses $work for its state; sets DOCKER_HOST, docker and dockerd_ns.
docker=/usr/bin/docker
dockerd_pid=

# dockerd_start NS: starts it and waits until it answers.
dockerd_start() {
    dockerd_ns=$1
    export DOCKER_HOST=unix://$work/docker.sock
    ip netns add "$dockerd_ns"
    ip netns exec "$dockerd_ns" ip link set lo up
    nsenter --net="/run/netns/$dockerd_ns" dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" \
        -H "$DOCKER_HOST" --pidfile "$work/docker.pid" >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 100); do $docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "dockerd did not start: $(tail -5 "$work/dockerd.log")" >&2
    return 1
}

# dockerd_stop: stops it (if started) and removes its namespace and mounts.
dockerd_stop() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null || true
    fi
    [ -z "${dockerd_ns:-}" ] || ip netns del "$dockerd_ns" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
}
