#!/bin/bash
# `berth build` side by side with buildah and docker (Debian's engine, legacy builder),
# on the same context (examples/microblog) and the same base (the Debian Python rootfs of
# scripts/base-python.sh, imported into each tool as pybase-bench):
#  1. cold: every step run (--no-cache), RUNS_COLD runs each;
#  2. no-change rebuild: every step from the cache, RUNS runs each, one hyperfine run;
#  3. layer export: berth packing a directory into a gzip layer vs `tar | gzip` of it
#     (cargo bench -p berth-image --bench pack), on the unpacked base layer.
# RUN steps have no network in every tool (the build needs none). dockerd runs in a
# network namespace of its own (bench/dockerd.sh).
# Usage: bench/build.sh BERTH PYBASE_TAR. Needs root, hyperfine, buildah, podman, docker.io.
set -euo pipefail
berth=$(realpath "$1")
tar=$(realpath "$2")
runs=${RUNS:-10}
runs_cold=${RUNS_COLD:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
ctx=$repo/examples/microblog
work=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
export BERTH_ROOT=$work/berth BERTH_RUN=$work/berth-run BERTH_CGROUP_PARENT=berth-bench-build
# shellcheck source=bench/dockerd.sh
. "$(dirname "$0")/dockerd.sh"
cleanup() {
    dockerd_stop
    podman rmi -f localhost/pybase-bench localhost/microblog-bench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The same Dockerfile for every tool, FROM the base as each tool names it.
dockerfile() {
    sed "s|^FROM pybase:latest|FROM $1|" "$ctx/Dockerfile" >"$work/Dockerfile.$2"
    echo "$work/Dockerfile.$2"
}

"$berth" import "$tar" pybase:latest >/dev/null
podman import "$tar" localhost/pybase-bench >/dev/null
dockerd_start berth-bench-build
$docker import "$tar" pybase-bench >/dev/null

# Each tool's command up to the context, which goes last (buildah takes no flag after it).
b=(build -q --network none -f "$(dockerfile pybase:latest berth)" -t microblog:bench)
h=(bud -q --network none --pull=never --layers -f "$(dockerfile localhost/pybase-bench buildah)" -t localhost/microblog-bench)
d=(build -q --network none -f "$(dockerfile pybase-bench docker)" -t microblog-bench)
export DOCKER_BUILDKIT=0

hyperfine -N --runs "$runs_cold" --export-markdown "$work/cold.md" \
    -n "berth build --no-cache" "$berth ${b[*]} --no-cache $ctx" \
    -n "buildah bud --no-cache" "buildah ${h[*]} --no-cache $ctx" \
    -n "docker build --no-cache" "$docker ${d[*]} --no-cache $ctx" >&2
echo "## Cold build of examples/microblog ($runs_cold runs)"
cat "$work/cold.md"

# The runs above filled each tool's cache; these use it.
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/cached.md" \
    -n "berth build" "$berth ${b[*]} $ctx" \
    -n "buildah bud --layers" "buildah ${h[*]} $ctx" \
    -n "docker build" "$docker ${d[*]} $ctx" >&2
echo
echo "## No-change rebuild ($runs runs)"
cat "$work/cached.md"

echo
echo "## Layer export: berth pack vs tar | gzip (median of 5)"
echo "| directory | berth | tar \| gzip | ratio | layer |"
echo "| --- | ---: | ---: | ---: | ---: |"
# The largest layer: the base rootfs (about 150 MB of files).
layer=$(du -s "$BERTH_ROOT"/layers/* | sort -n | tail -1 | cut -f2)
(cd "$repo" && cargo bench -q -p berth-image --bench pack -- "$layer" 5 2>/dev/null)
