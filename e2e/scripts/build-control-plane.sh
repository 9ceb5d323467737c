#!/bin/bash
# Builds the e2e control plane from upstream Go modules: etcd, kube-apiserver and kubectl,
# at the versions pinned in e2e/controlplane/versions.env (and the wrapper modules' go.sum).
#
#   e2e/scripts/build-control-plane.sh          # build if needed; prints the bin directory
#   BIN=$(e2e/scripts/build-control-plane.sh)   # stdout is only the bin directory
#
# Output: ${BERTH_CONTROL_PLANE_CACHE:-~/.cache/berth/control-plane}/<k8s>-<etcd>/bin/.
# Idempotent: when the binaries there were built from the same go.mod/go.sum, Go version and
# flags, and report the pinned versions, it does nothing. Safe to run concurrently (flock).
# Module and build caches stay in Go's defaults (GOMODCACHE ~/go/pkg/mod, GOCACHE
# ~/.cache/go-build); cache those, and the output directory, between CI runs.
set -euo pipefail

log() { echo "build-control-plane: $*" >&2; }
die() { log "$*"; exit 1; }

src="$(cd "$(dirname "$0")/../controlplane" && pwd)"
# shellcheck source=../controlplane/versions.env
. "$src/versions.env"
: "${K8S_VERSION:?}" "${ETCD_VERSION:?}"

# Non-interactive shells (CI) may not have read the profile that puts Go on PATH.
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || die "go is not installed (need Go >= $(sed -n 's/^go //p' "$src/go.mod"))"

out="${BERTH_CONTROL_PLANE_CACHE:-$HOME/.cache/berth/control-plane}/$K8S_VERSION-$ETCD_VERSION"
bin="$out/bin"
mkdir -p "$out"

# Everything the binaries depend on, so a change to any of them rebuilds.
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
tags="selinux,notest"
common_flags=(-trimpath -buildvcs=false -mod=readonly)
stamp_want="$(
  echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION tags=$tags flags=${common_flags[*]} ldflags=-s,-w"
  go version
  go env GOOS GOARCH
  cat "$src/go.mod" "$src/go.sum" "$src/etcd/go.mod" "$src/etcd/go.sum" | sha256sum
)"

# The binaries exist, were built from these inputs and say they are the pinned versions.
up_to_date() {
  [[ -x "$bin/etcd" && -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -f "$out/stamp" ]] || return 1
  [[ "$(cat "$out/stamp")" == "$stamp_want" ]] || return 1
  # Output captured first: `cmd | grep -q` would fail under pipefail when grep's early
  # exit kills cmd with SIGPIPE.
  local v
  v="$("$bin/etcd" --version 2>&1)" && grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$v" || return 1
  v="$("$bin/kube-apiserver" --version 2>&1)" && grep -qx "Kubernetes $K8S_VERSION" <<<"$v" || return 1
  v="$("$bin/kubectl" version --client 2>&1)" && grep -qx "Client Version: $K8S_VERSION" <<<"$v" || return 1
}

if up_to_date; then echo "$bin"; exit 0; fi

# One build at a time per output directory; whoever waited re-checks first.
exec 9>"$out/.lock"
flock 9
if up_to_date; then echo "$bin"; exit 0; fi

export CGO_ENABLED=0
# The build date is the release time of k8s.io/kubernetes (from the module proxy), not
# now: the same inputs give the same binaries.
build_date="$(cd "$src" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

tmp="$(mktemp -d "$out/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$SECONDS
log "building kube-apiserver, kubectl $K8S_VERSION and etcd $ETCD_VERSION into $bin (cold: ~10 minutes on 2 cores)"
# etcd (its own module) builds alongside: it fills the cores while kube-apiserver's long,
# mostly single-threaded link runs.
(cd "$src/etcd" && go build "${common_flags[@]}" -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 &&
  log "etcd built after $((SECONDS - start))s") &
etcd_job=$!
# kube-apiserver and kubectl in one invocation: their shared packages are compiled once and
# one link overlaps the other's compilation.
k8s_rc=0
(cd "$src" && go build "${common_flags[@]}" -tags "$tags" -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) || k8s_rc=$?
((k8s_rc == 0)) && log "kube-apiserver, kubectl built after $((SECONDS - start))s"
etcd_rc=0
wait "$etcd_job" || etcd_rc=$?
((k8s_rc == 0)) || die "building kube-apiserver and kubectl failed (exit $k8s_rc)"
((etcd_rc == 0)) || die "building etcd failed (exit $etcd_rc)"

mkdir -p "$bin"
rm -f "$out/stamp"
for b in etcd kube-apiserver kubectl; do mv -f "$tmp/$b" "$bin/$b"; done
printf '%s\n' "$stamp_want" > "$out/stamp.tmp" && mv -f "$out/stamp.tmp" "$out/stamp"
up_to_date || die "built binaries in $bin do not report the pinned versions: $("$bin/kube-apiserver" --version 2>&1), $("$bin/etcd" --version 2>&1 | head -1)"
log "done in $((SECONDS - start))s"
echo "$bin"
