#!/bin/bash
# A local berth cluster: a real control plane (etcd + kube-apiserver, see
# control-plane.sh) and N hosts, each a network namespace joined to one test bridge with
# its own berth state, each running berth-agent; plus berth-controller.
#
#   cluster.sh up DIR [--hosts N]     bring it up; prints `export` lines for a shell
#   cluster.sh down DIR               remove everything `up` made
#   cluster.sh agent DIR HOST start|stop|kill
#   cluster.sh controller DIR NAME start|stop|kill
#   cluster.sh berth DIR HOST ARGS... run `berth` as host HOST (its namespace and state)
#   cluster.sh restart-apiserver DIR  kill kube-apiserver (SIGKILL) and start it again
#
# Binaries come from $BERTH_BIN (default: target/debug of this checkout). Timing for tests:
# BERTH_LEASE_SECONDS (agents' Lease, default 15), BERTH_CONTROLLER_LEASE_SECONDS (the
# controllers' leader Lease, default BERTH_LEASE_SECONDS; a leader that cannot renew it for
# that long exits, as during an API server restart longer than it), BERTH_NODE_GRACE
# (seconds a NotReady host keeps its Replicas, default 30), BERTH_RESYNC (agent sync
# interval, default 3).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${BERTH_BIN:-$repo/target/debug}

die() { echo "cluster: $*" >&2; exit 1; }

load() {
    dir=$(realpath -m "$1")
    [ -f "$dir/cluster.env" ] || die "no cluster in $dir"
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
}

# A pid recorded under DIR, if it is alive and still runs what we started.
alive() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -d "/proc/$pid" ] && grep -q "$dir" "/proc/$pid/environ" 2>/dev/null && echo "$pid"
}

# Gone, or a zombie (nothing left of it but its exit status).
gone() { [ ! -d "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

stop_pid() {
    local pidfile=$1 signal=${2:-TERM} pid
    if pid=$(alive "$pidfile"); then
        kill -"$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 50); do gone "$pid" && break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do gone "$pid" && break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

host_env() {
    local h=$1
    echo "BERTH_ROOT=$dir/hosts/$h/root BERTH_RUN=$dir/hosts/$h/run BERTH_CGROUP_PARENT=berth-$id-$h"
}

cmd_berth() {
    load "$1"
    local h=$2
    shift 2
    # shellcheck disable=SC2046
    nsenter --net="/run/netns/berth-$id-$h" env $(host_env "$h") "$bin/berth" "$@"
}

cmd_agent() {
    load "$1"
    local h=$2 action=$3 i=${2#h}
    case $action in
    start)
        alive "$dir/hosts/$h/agent.pid" >/dev/null && die "the agent of $h already runs"
        # shellcheck disable=SC2046
        nsenter --net="/run/netns/berth-$id-$h" env $(host_env "$h") KUBECONFIG="$dir/cp/$h.kubeconfig" \
            BERTH_CLUSTER_DIR="$dir" setsid "$bin/berth-agent" --node "$h" --address "$net.$((10 + i))" \
            --lease-seconds "${BERTH_LEASE_SECONDS:-15}" --resync-seconds "${BERTH_RESYNC:-3}" \
            --label "berth.dev/host=$h" >>"$dir/hosts/$h/agent.log" 2>&1 </dev/null &
        echo $! >"$dir/hosts/$h/agent.pid"
        ;;
    stop) stop_pid "$dir/hosts/$h/agent.pid" TERM ;;
    kill) stop_pid "$dir/hosts/$h/agent.pid" KILL ;;
    *) die "agent: start, stop or kill" ;;
    esac
}

cmd_controller() {
    load "$1"
    local name=$2 action=$3
    case $action in
    start)
        alive "$dir/$name.pid" >/dev/null && die "controller $name already runs"
        KUBECONFIG="$dir/cp/berth-controller.kubeconfig" BERTH_CLUSTER_DIR="$dir" setsid "$bin/berth-controller" \
            --identity "$name" --lease-seconds "${BERTH_CONTROLLER_LEASE_SECONDS:-${BERTH_LEASE_SECONDS:-15}}" \
            --node-grace-seconds "${BERTH_NODE_GRACE:-30}" --resync-seconds 5 \
            >>"$dir/$name.log" 2>&1 </dev/null &
        echo $! >"$dir/$name.pid"
        ;;
    stop) stop_pid "$dir/$name.pid" TERM ;;
    kill) stop_pid "$dir/$name.pid" KILL ;;
    *) die "controller: start, stop or kill" ;;
    esac
}

cmd_restart_apiserver() {
    load "$1"
    local pidfile="$dir/cp/kube-apiserver.pid" pid
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] || die "kube-apiserver is not running"
    local -a argv
    mapfile -d '' argv <"/proc/$pid/cmdline"
    kill -KILL "$pid"
    while [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do sleep 0.05; done
    setsid "${argv[@]}" </dev/null >>"$dir/cp/kube-apiserver.log" 2>&1 &
    echo $! >"$pidfile"
    # As long as control-plane.sh up waits for it: a loaded machine takes a while.
    local deadline=$((SECONDS + ${BERTH_CP_TIMEOUT:-180}))
    while [ $SECONDS -lt $deadline ]; do
        "$here/control-plane.sh" status "$dir/cp" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail -n 20 "$dir/cp/kube-apiserver.log" >&2
    die "kube-apiserver did not come back within ${BERTH_CP_TIMEOUT:-180}s"
}

# The cgroups berth made for host H's containers (one per v1 hierarchy, or one on v2).
host_cgroups() { ls -d /sys/fs/cgroup/berth-"$id-$1" /sys/fs/cgroup/*/berth-"$id-$1" 2>/dev/null || true; }

# Processes of this cluster that outlived what stopped them: agents, controllers and
# container monitors carry the cluster's directory in their environment (exactly: a
# shell that merely points KUBECONFIG into DIR is not ours), containers are in the hosts'
# cgroups. SIGKILLed, and waited for.
ours() {
    local e
    while IFS= read -r -d '' e; do
        [ "$e" = "BERTH_CLUSTER_DIR=$dir" ] && return 0
        case $e in "BERTH_ROOT=$dir/hosts/"*) return 0 ;; esac
    done <"/proc/$1/environ"
    return 1
} 2>/dev/null

kill_leftovers() {
    local pids=() p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
        ours "$p" && pids+=("$p")
    done
    local cg
    for i in $(seq "$hosts"); do
        for cg in $(host_cgroups "h$i"); do
            # shellcheck disable=SC2046
            pids+=($(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null))
        done
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do gone "$p" && break; sleep 0.05; done
    done
}

# Network names of this cluster (id) in the root namespace: the bridge, the root-side
# veth ends, the hosts' namespaces.
our_links() { ls -d /sys/class/net/bc"$id" /sys/class/net/vc"$id"* 2>/dev/null | sed 's|.*/||' || true; }
our_netns() { ls -d /run/netns/berth-"$id"-* 2>/dev/null | sed 's|.*/||' || true; }

# Removes this cluster's links and namespaces. Deleting a veth's root-side end removes
# both ends at once; deleting a namespace only drops its name, and the kernel tears down
# what was in it (its veth end, hence our end too) later, a minute or more on a busy
# machine: an `up` meanwhile would find its names taken (RTNETLINK answers: File exists).
clear_net() {
    local l n
    for l in $(our_links); do ip link del "$l" 2>/dev/null || true; done
    for n in $(our_netns); do ip netns del "$n" 2>/dev/null || true; done
    for _ in $(seq 100); do
        [ -z "$(our_links)$(our_netns)" ] && return 0
        for l in $(our_links); do ip link del "$l" 2>/dev/null || true; done
        sleep 0.1
    done
    die "could not remove $(our_links) $(our_netns)"
}

cmd_up() {
    dir=$(realpath -m "$1")
    shift
    local hosts=3
    while [ $# -gt 0 ]; do
        case $1 in
        --hosts) hosts=$2; shift 2 ;;
        *) die "unknown option $1" ;;
        esac
    done
    [ -e "$dir/cluster.env" ] && die "$dir already holds a cluster; cluster.sh down $dir first"
    for b in berth berth-agent berth-controller; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing: cargo build --workspace --bins (or set BERTH_BIN)"
    done
    mkdir -p "$dir"
    id=$(printf '%s' "$dir" | sha256sum | cut -c1-6)
    net="10.77.$((16#${id:0:2} % 250))"
    printf 'id=%s\nnet=%s\nhosts=%s\n' "$id" "$net" "$hosts" >"$dir/cluster.env"
    trap 'echo "cluster: up failed; cleaning up" >&2; cmd_down "$dir" >&2' ERR

    # What an earlier cluster in DIR left behind (a down that was interrupted, or a
    # machine that crashed) would make the names below taken.
    clear_net
    ip link add "bc$id" type bridge
    ip addr add "$net.1/24" dev "bc$id"
    ip link set "bc$id" up

    "$here/control-plane.sh" up "$dir/cp" --listen "$net.1" >/dev/null
    local kubectl
    kubectl="$(. "$dir/cp/env" && echo "$BERTH_CP_BIN")/kubectl"
    export KUBECONFIG="$dir/cp/admin.kubeconfig"
    "$kubectl" apply -f "$repo/manifests/crds/" >/dev/null
    "$kubectl" apply -f "$repo/manifests/rbac/" >/dev/null
    "$kubectl" wait --for condition=Established crd --all --timeout=60s >/dev/null
    "$here/control-plane.sh" kubeconfig "$dir/cp" berth-controller berth:controllers >/dev/null

    [ -f "$dir/busybox.tar" ] || "$repo/scripts/busybox-rootfs.sh" "$dir/busybox.tar"
    for i in $(seq "$hosts"); do
        local h="h$i" ns="berth-$id-h$i"
        mkdir -p "$dir/hosts/$h"
        ip netns add "$ns"
        ip link add "vc$id$i" type veth peer name eth0 netns "$ns"
        ip link set "vc$id$i" master "bc$id" up
        ip -n "$ns" addr add "$net.$((10 + i))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "$net.1"
        "$here/control-plane.sh" kubeconfig "$dir/cp" "$h" berth:agents >/dev/null
        cmd_berth "$dir" "$h" import "$dir/busybox.tar" base:latest >/dev/null
        cmd_agent "$dir" "$h" start
    done
    cmd_controller "$dir" controller start
    for _ in $(seq 150); do
        [ "$("$kubectl" get berthnodes --no-headers 2>/dev/null | wc -l)" -ge "$hosts" ] && break
        sleep 0.2
    done
    trap - ERR
    echo "export KUBECONFIG=$dir/cp/admin.kubeconfig"
    echo "export PATH=$(dirname "$kubectl"):\$PATH"
}

cmd_down() {
    dir=$(realpath -m "$1")
    [ -f "$dir/cluster.env" ] || { rm -rf "$dir"; return 0; }
    load "$dir"
    for pidfile in "$dir"/*.pid; do [ -e "$pidfile" ] && stop_pid "$pidfile" TERM; done
    for i in $(seq "$hosts"); do
        local h="h$i"
        [ -d "$dir/hosts/$h" ] || continue
        stop_pid "$dir/hosts/$h/agent.pid" TERM
        if [ -e "/run/netns/berth-$id-$h" ] && [ -d "$dir/hosts/$h/root" ]; then
            cmd_berth "$dir" "$h" ps -a -q --no-trunc 2>/dev/null | while read -r c; do
                cmd_berth "$dir" "$h" rm -f "$c" >/dev/null 2>&1 || true
            done
        fi
    done
    kill_leftovers
    for i in $(seq "$hosts"); do
        # Deepest first: a cgroup with children cannot be removed.
        for cg in $(host_cgroups "h$i"); do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    done
    clear_net
    "$here/control-plane.sh" down "$dir/cp" >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case ${1:-} in
up) shift; cmd_up "$@" ;;
down) shift; cmd_down "$@" ;;
agent) shift; cmd_agent "$@" ;;
controller) shift; cmd_controller "$@" ;;
berth) shift; cmd_berth "$@" ;;
restart-apiserver) shift; cmd_restart_apiserver "$@" ;;
*) die "usage: cluster.sh up|down|agent|controller|berth|restart-apiserver DIR ..." ;;
esac
