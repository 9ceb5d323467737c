#!/bin/bash
# Registry push and pull, side by side with skopeo, on the same 3-layer ~100 MB image
# (gzip layers of random data, so both tools send them as stored) and the same
# loopback registry (Debian's docker-registry, plain HTTP):
#   push:  berth push IMG                 vs  skopeo copy oci:<berth's store>:TAG docker://IMG
#   pull:  berth pull IMG (empty store)   vs  skopeo copy docker://IMG oci:<empty dir>:TAG
#   no-op push (every blob already there): berth push IMG  vs  the same skopeo copy again
# Before each push run the registry restarts with empty storage; before each pull run the
# destination is emptied (hyperfine --prepare, not timed).
# Usage: bench/registry.sh BERTH. Needs docker-registry, skopeo, hyperfine, python3.
set -euo pipefail
berth=$(realpath "$1")
runs=${RUNS:-5}

# The registry: its pid in $work/registry.pid, its storage $work/registry (emptied at
# each start), plain HTTP on $host.
stop_registry() {
    local pid
    pid=$(cat "$work/registry.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
        rm -f "$work/registry.pid"
    fi
}
start_registry() {
    stop_registry
    rm -rf "$work/registry"
    docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
    echo $! >"$work/registry.pid"
    for _ in $(seq 200); do
        curl -fs "http://$host/v2/" >/dev/null && return 0
        sleep 0.05
    done
    echo "the registry did not start: $(cat "$work/registry.log")" >&2
    exit 1
}

# hyperfine's --prepare before each push: `registry.sh BERTH restart WORK HOST`.
if [ "${2:-}" = restart ]; then
    work=$3 host=$4
    start_registry
    rm -f "$work/berth/distribution.json"
    exit 0
fi

work=$(mktemp -d /tmp/berth-bench-registry.XXXXXX)
export BERTH_ROOT=$work/berth BERTH_RUN=$work/berth-run XDG_CONFIG_HOME=$work/config DOCKER_CONFIG=$work/docker
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
image=$host/bench/app:latest
cleanup() {
    stop_registry
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $host
YML

echo "# berth $("$berth" --version), $(skopeo --version), $(hyperfine --version), docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"

# Three layers of about 33 MB each, in a docker-archive that berth loads.
python3 - "$work/archive" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]; os.makedirs(out)
diff_ids, layers = [], []
for i in range(3):
    data = os.urandom(33 * 1024 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo(f"layer{i}.bin"); info.size = len(data); info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    open(os.path.join(out, f"layer{i}.tar.gz"), "wb").write(gzip.compress(tar, 1))
    layers.append(f"layer{i}.tar.gz")
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cfg = hashlib.sha256(config).hexdigest() + ".json"
open(os.path.join(out, cfg), "wb").write(config)
json.dump([{"Config": cfg, "RepoTags": ["bench/app:latest"], "Layers": layers}],
          open(os.path.join(out, "manifest.json"), "w"))
PY
tar -C "$work/archive" -cf "$work/archive.tar" .
"$berth" load -q -i "$work/archive.tar" >/dev/null
"$berth" tag bench/app:latest "$image"
size=$(du -sb "$BERTH_ROOT/images/blobs" | cut -f1)
echo "image: 3 layers, $((size / 1000000)) MB in the store"

start_registry
restart="$0 $berth restart $work $host"
oci_src="oci:$BERTH_ROOT/images:latest"

echo
echo "## push (registry restarted empty before each run)"
hyperfine -N -r "$runs" --prepare "$restart" \
    -n "berth push" "$berth push -q $image" \
    -n "skopeo copy (push)" "skopeo copy -q --dest-tls-verify=false $oci_src docker://$host/bench/skopeo:latest"

# The registry now holds the image under both names (the last prepare left it running).
"$berth" push -q "$image" >/dev/null
skopeo copy -q --dest-tls-verify=false "$oci_src" "docker://$host/bench/skopeo:latest"

echo
echo "## pull (empty destination before each run)"
hyperfine -N -r "$runs" \
    --prepare "rm -rf $work/pulled $work/skopeo-dir" \
    -n "berth pull" "env BERTH_ROOT=$work/pulled $berth pull -q $image" \
    -n "skopeo copy (pull)" "skopeo copy -q --src-tls-verify=false docker://$image oci:$work/skopeo-dir:latest"

echo
echo "## no-op push (every blob and the manifest already there; goal: berth under 50 ms)"
hyperfine -N -r 20 -w 3 \
    -n "berth push (no-op)" "$berth push -q $image" \
    -n "skopeo copy (no-op)" "skopeo copy -q --dest-tls-verify=false $oci_src docker://$host/bench/skopeo:latest"
