#!/bin/bash
# Cluster mode: on a local cluster (e2e/scripts/cluster.sh: real control plane, three hosts
# as network namespaces), measures
#   1. the time from `kubectl apply` of an App with 30 replicas to all 30 Ready;
#   2. idle berth-agent RSS;
#   3. berth-controller RSS with 1,000 Apps (replicas: 0, so no containers);
# and runs the planner benchmark (10,000 Replicas over 100 nodes).
# Usage: bench/cluster.sh (from the repository, after `cargo build --release --workspace`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export BERTH_BIN=${BERTH_BIN:-$repo/target/release}
dir=$(mktemp -d /tmp/berth-bench-cluster.XXXXXX)
rmdir "$dir"
trap '"$repo/e2e/scripts/cluster.sh" down "$dir" >/dev/null 2>&1 || true' EXIT
BERTH_RESYNC=2 "$repo/e2e/scripts/cluster.sh" up "$dir" >/dev/null
export KUBECONFIG=$dir/cp/admin.kubeconfig
kubectl="$(. "$dir/cp/env" && echo "$BERTH_CP_BIN")/kubectl"
rss() { awk '/VmRSS/ {print $2, $3}' "/proc/$(cat "$1")/status"; }

sleep 3
echo "## Idle berth-agent"
for h in h1 h2 h3; do echo "$h: VmRSS $(rss "$dir/hosts/$h/agent.pid")"; done

echo
echo "## 30 replicas over 3 hosts: kubectl apply to all Ready"
start=$(date +%s.%N)
sed 's/replicas: 3/replicas: 30/' "$repo/manifests/examples/hello.yaml" | "$kubectl" apply -f - >/dev/null
until [ "$("$kubectl" get app hello -o jsonpath='{.status.readyReplicas}')" = 30 ]; do sleep 0.05; done
end=$(date +%s.%N)
echo "all 30 Ready after $(python3 -c "print(round($end - $start, 2))") s"
"$kubectl" delete app hello --timeout=120s >/dev/null

echo
echo "## berth-controller with 1,000 Apps"
echo "before: VmRSS $(rss "$dir/controller.pid")"
python3 - >"$dir/apps.yaml" <<'PY'
for i in range(1000):
    print(f"""---
apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: app-{i}
spec:
  replicas: 0
  template:
    image: base:latest
""")
PY
"$kubectl" apply -f "$dir/apps.yaml" >/dev/null
until [ "$("$kubectl" get apps -o jsonpath='{range .items[*]}{.status.currentRevision}{"\n"}{end}' | grep -c .)" -ge 1000 ]; do sleep 1; done
sleep 5
echo "1,000 Apps reconciled: VmRSS $(rss "$dir/controller.pid")"

echo
echo "## Planner"
(cd "$repo" && cargo bench -q -p berth-controller --bench plan 2>/dev/null | grep replicas)
