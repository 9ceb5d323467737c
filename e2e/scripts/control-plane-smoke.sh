#!/bin/bash
# End-to-end check of the e2e control plane: two control planes started in parallel (one on
# 127.0.0.1, one on 127.0.0.2), then on the first: server version, namespaces, a CRD with a
# selectable field and objects listed by field selector, a least-privilege user that is
# denied until a Role grants it access; then both are stopped and nothing may be left.
#
#   e2e/scripts/control-plane-smoke.sh [WORKDIR]     (WORKDIR default: a new temp dir)
#
# Builds the binaries first if needed. Prints "N passed, M failed" at the end; exit 1 on
# any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../controlplane/versions.env
. "$here/../controlplane/versions.env"

work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/berth-cp-smoke.XXXXXX")}"
mkdir -p "$work"
a="$work/a" b="$work/b"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # DESCRIPTION CMD...: passes when CMD exits 0
  local d="$1"; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
fails() { ! "$@" >/dev/null 2>&1; }       # CMD... exits non-zero
has_line() { grep -qx -- "$2" <<<"$1"; }  # TEXT LINE
has() { grep -q -- "$2" <<<"$1"; }        # TEXT PATTERN
comment() { while IFS= read -r l; do echo "# $l"; done <<<"$1"; }

cleanup() {
  "$here/control-plane.sh" down "$a" || true
  "$here/control-plane.sh" down "$b" || true
  rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

BERTH_CP_BIN="$("$here/build-control-plane.sh")"
export BERTH_CP_BIN
kubectl() { "$BERTH_CP_BIN/kubectl" "$@"; }

# --- two control planes in parallel ------------------------------------------------------
start=$SECONDS
"$here/control-plane.sh" up "$a" >"$work/a.out" 2>"$work/a.err" &
pa=$!
"$here/control-plane.sh" up "$b" --listen 127.0.0.2 >"$work/b.out" 2>"$work/b.err" &
pb=$!
ra=0 rb=0
wait "$pa" || ra=$?
wait "$pb" || rb=$?
echo "# both up after $((SECONDS - start))s"
if ((ra != 0 || rb != 0)); then
  cat "$work/a.err" "$work/b.err" >&2
  bad "two control planes come up in parallel"
  echo "$passed passed, $failed failed"
  exit 1
fi
ok "two control planes come up in parallel"
rm -f "$work/a.out" "$work/b.out" "$work/a.err" "$work/b.err"
admin="$a/admin.kubeconfig"
# shellcheck disable=SC1091
server_a="$(. "$a/env" && echo "$BERTH_CP_SERVER")"
# shellcheck disable=SC1091
server_b="$(. "$b/env" && echo "$BERTH_CP_SERVER")"
echo "# a: $server_a  b: $server_b"
check "distinct servers" test "$server_a" != "$server_b"
check "b listens on 127.0.0.2" grep -q '^https://127.0.0.2:' <<<"$server_b"
check "status reports a running" "$here/control-plane.sh" status "$a"

# --- version and namespaces --------------------------------------------------------------
version="$(kubectl --kubeconfig "$admin" version 2>&1)" || true
comment "$version"
check "server reports $K8S_VERSION" grep -qx "Server Version: $K8S_VERSION" <<<"$version"
check "client reports $K8S_VERSION" grep -qx "Client Version: $K8S_VERSION" <<<"$version"
check "kubectl does not warn about version skew" fails has "$version" "[Ww]arning"
nss="$(kubectl --kubeconfig "$admin" get ns -o name 2>&1)" || true
comment "$nss"
check "namespace default exists" has_line "$nss" namespace/default
check "namespace kube-system exists" has_line "$nss" namespace/kube-system
check "b is a separate cluster (a's credentials fail there)" fails kubectl --kubeconfig "$admin" --server "$server_b" get ns

# --- a CRD with a selectable field -------------------------------------------------------
kubectl --kubeconfig "$admin" apply -f - <<'EOF' >/dev/null
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.berth.dev
spec:
  group: smoke.berth.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              nodeName: {type: string}
    selectableFields:
    - jsonPath: .spec.nodeName
EOF
check "CRD is established" kubectl --kubeconfig "$admin" wait --for=condition=Established \
  crd/widgets.smoke.berth.dev --timeout=60s
for n in a b; do
  kubectl --kubeconfig "$admin" apply -f - <<EOF >/dev/null
apiVersion: smoke.berth.dev/v1
kind: Widget
metadata: {name: w-$n, namespace: default}
spec: {nodeName: node-$n}
EOF
done
sel="$(kubectl --kubeconfig "$admin" get widgets -n default --field-selector spec.nodeName=node-b -o name 2>&1)" || true
check "field selector spec.nodeName=node-b lists only w-b ($sel)" test "$sel" = widget.smoke.berth.dev/w-b

# --- a least-privilege identity ----------------------------------------------------------
agent="$("$here/control-plane.sh" kubeconfig "$a" agent-1 berth:agents)"
check "kubeconfig written to DIR/agent-1.kubeconfig" test "$agent" = "$a/agent-1.kubeconfig"
who="$(kubectl --kubeconfig "$agent" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}' 2>&1)" || true
echo "# whoami: $who"
check "the server sees user agent-1 in group berth:agents" grep -q '^agent-1 .*berth:agents' <<<"$who"
can="$(kubectl --kubeconfig "$agent" auth can-i list widgets.smoke.berth.dev -n default 2>&1)" && rc=0 || rc=$?
check "agent-1 may not list widgets (can-i: $can, exit $rc)" test "$can" = no -a "$rc" -ne 0
refused="$(kubectl --kubeconfig "$agent" get widgets -n default 2>&1)" && rc=0 || rc=$?
check "agent-1 is refused when it tries (exit $rc)" test "$rc" -ne 0
check "with Forbidden" has "$refused" Forbidden
kubectl --kubeconfig "$admin" -n default create role widget-reader --verb=get,list,watch \
  --resource=widgets.smoke.berth.dev >/dev/null
kubectl --kubeconfig "$admin" -n default create rolebinding agents-read-widgets \
  --role=widget-reader --group=berth:agents >/dev/null
check "after a RoleBinding to its group, agent-1 may list widgets" \
  kubectl --kubeconfig "$agent" auth can-i list widgets.smoke.berth.dev -n default
check "but still may not delete them" fails kubectl --kubeconfig "$agent" auth can-i delete widgets.smoke.berth.dev -n default

# --- down leaves nothing -----------------------------------------------------------------
pids="$(cat "$a"/*.pid "$b"/*.pid)"
"$here/control-plane.sh" down "$a"
"$here/control-plane.sh" down "$b"
alive=""
for p in $pids; do # a zombie is not running: it only waits for init to reap it
  st="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null)" || continue
  [[ "${st:0:1}" == Z ]] || alive+=" $p"
done
check "down stops every process (left:${alive:- none})" test -z "$alive"
check "down removes the directories" test ! -e "$a" -a ! -e "$b"
mentions=""
for c in /proc/[0-9]*/cmdline; do
  cmdline="$({ tr '\0' ' ' <"$c"; } 2>/dev/null)" || continue
  [[ "$cmdline" == *"$a/"* || "$cmdline" == *"$b/"* ]] && mentions+=" ${c//[^0-9]/}"
done
check "no process has a or b in its command line (found:${mentions:- none})" test -z "$mentions"
check "down is idempotent" "$here/control-plane.sh" down "$a"

echo "$passed passed, $failed failed"
((failed == 0))
