#!/bin/bash
# A throwaway Kubernetes control plane (etcd + kube-apiserver, no controllers) for e2e tests.
#
#   control-plane.sh up DIR [--listen ADDR] [--port N] [--etcd-port N] [--san NAME|IP]...
#       Starts etcd and kube-apiserver with everything under DIR: certificates (DIR/pki),
#       etcd data (DIR/etcd), logs (DIR/*.log), pids (DIR/*.pid), DIR/admin.kubeconfig
#       (CN=admin, O=system:masters) and DIR/env (shell variables describing the cluster).
#       Waits for /readyz and the default namespace. Prints the admin kubeconfig's path.
#   control-plane.sh kubeconfig DIR NAME [GROUP...]
#       Mints a client certificate for user NAME in GROUPs (certificate organizations) and
#       writes DIR/NAME.kubeconfig (self-contained). Prints its path.
#   control-plane.sh status DIR     exit 0 when the apiserver in DIR answers /readyz
#   control-plane.sh down DIR       stops what `up DIR` started and removes DIR
#
# Ports: kube-apiserver listens on ADDR (default 127.0.0.1):--port, etcd on 127.0.0.1 only.
# Ports not given are picked at random among free ones in 20000-32767 (below Linux's
# ephemeral range), retried if another process wins the race, so several control planes can
# run side by side with distinct DIRs. Flags may also come from the environment:
# BERTH_CP_LISTEN, BERTH_CP_PORT, BERTH_CP_ETCD_PORT; BERTH_CP_TIMEOUT (seconds, default
# 180) bounds the wait for readiness. Binaries: BERTH_CP_BIN, else the output of
# build-control-plane.sh (which builds them the first time).
#
# No controllers run: there is no default ServiceAccount (nor token controller) and deleted
# namespaces never finish terminating. Tests create what they need.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
log() { echo "control-plane: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}

# --- helpers -----------------------------------------------------------------------------

abs_dir() { # DIR -> absolute path (DIR need not exist)
  local d="$1"
  [[ -n "$d" ]] || die "DIR is empty"
  [[ "$d" == /* ]] || d="$PWD/$d"
  # Normalise without requiring existence.
  realpath -m -- "$d"
}

url_host() { [[ "$1" == *:* ]] && echo "[$1]" || echo "$1"; } # IPv6 literals need brackets
is_ip() { [[ "$1" =~ ^[0-9]+(\.[0-9]+){3}$ || "$1" == *:* ]]; }

port_free() { # PORT -> 0 when nothing listens on it (TCP, any address)
  [[ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
}
pick_port() { # [EXCLUDED...] -> a currently free port in 20000-32767
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    [[ " $* " == *" $p "* ]] && continue
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found in 20000-32767"
}

# A pid recorded in DIR is ours only while its command line still mentions DIR (pids are
# reused). Prints the pid when it is alive and ours.
our_pid() { # DIR NAME
  local f="$1/$2.pid" pid cmdline
  [[ -f "$f" ]] || return 1
  pid="$(<"$f")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$1/"* ]] || return 1
  echo "$pid"
}

alive() { # PID: running and not a zombie (a child that `up` started and has not reaped)
  local st
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "${st:0:1}" != Z ]]
}

stop_proc() { # DIR NAME: SIGTERM, wait up to 15 s, then SIGKILL; waits until it is gone
  local pid i
  pid="$(our_pid "$1" "$2")" || { rm -f "$1/$2.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$2 (pid $pid) ignored SIGTERM for 15s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
  fi
  alive "$pid" && die "$2 (pid $pid) is still running"
  wait "$pid" 2>/dev/null || true # reap it if it is our child
  rm -f "$1/$2.pid"
}

start_proc() { # DIR NAME CMD...: runs CMD in its own session, detached from our stdio
  local dir="$1" name="$2"; shift 2
  # Not in our process group: the caller's Ctrl-C or exit must not take it down; `down`
  # does. stdin/stdout/stderr are files, so `$(control-plane.sh up ...)` returns.
  setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 &
  local pid=$! exe i
  echo "$pid" >"$dir/$name.pid"
  # Until the child has exec'd, /proc/PID shows this script, not the binary: wait for the
  # exec so that our_pid (which matches DIR in the command line) recognises it.
  exe="$(realpath -- "$1")"
  for ((i = 0; i < 100; i++)); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] && return 0
    alive "$pid" || return 0 # exited already; the caller reads the log
    sleep 0.05
  done
  log "$name (pid $pid) did not exec $exe within 5s"
}

tail_log() { # DIR NAME
  [[ -f "$1/$2.log" ]] && { log "last lines of $1/$2.log:"; tail -n 25 "$1/$2.log" >&2; }
  return 0
}

bin_dir() {
  if [[ -n "${BERTH_CP_BIN:-}" ]]; then echo "$BERTH_CP_BIN"; else "$here/build-control-plane.sh"; fi
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # FILE SERVER CA CERT KEY USER
  local tmp="$1.tmp.$$"
  umask 077
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth-e2e
  cluster:
    server: $2
    certificate-authority-data: $(b64 "$3")
users:
- name: $6
  user:
    client-certificate-data: $(b64 "$4")
    client-key-data: $(b64 "$5")
contexts:
- name: $6@berth-e2e
  context:
    cluster: berth-e2e
    user: $6
current-context: $6@berth-e2e
EOF
  mv -f "$tmp" "$1"
}

# Client certificate for NAME in GROUPS signed by DIR's CA -> DIR/pki/client-NAME.{crt,key}
mint_client_cert() { # DIR NAME [GROUP...]
  local dir="$1" name="$2"; shift 2
  local pki="$dir/pki" subj="/CN=$name" g
  for g in "$@"; do subj+="/O=$g"; done
  local base="$pki/client-${name//[^A-Za-z0-9._-]/_}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$base.key" -out "$base.csr" 2>/dev/null
  openssl x509 -req -in "$base.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -days 3650 \
    -out "$base.crt" -extfile <(printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth') 2>/dev/null
  rm -f "$base.csr"
  echo "$base"
}

valid_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9:._@-]*$ ]]; }

# --- up ----------------------------------------------------------------------------------

cmd_up() {
  [[ $# -ge 1 ]] || usage
  UP_DIR="$(abs_dir "$1")"; shift
  local dir="$UP_DIR"
  local listen="${BERTH_CP_LISTEN:-127.0.0.1}" port="${BERTH_CP_PORT:-}" etcd_port="${BERTH_CP_ETCD_PORT:-}"
  local timeout="${BERTH_CP_TIMEOUT:-180}" sans=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --listen) listen="${2:?--listen needs an address}"; shift 2 ;;
      --listen=*) listen="${1#*=}"; shift ;;
      --port) port="${2:?--port needs a number}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --etcd-port) etcd_port="${2:?--etcd-port needs a number}"; shift 2 ;;
      --etcd-port=*) etcd_port="${1#*=}"; shift ;;
      --san) sans+=("${2:?--san needs a name or address}"); shift 2 ;;
      --san=*) sans+=("${1#*=}"); shift ;;
      *) die "up: unknown argument '$1' (see --help)" ;;
    esac
  done
  is_ip "$listen" || die "--listen must be an IP address, not '$listen' (it is also the advertise address)"
  [[ "$listen" != 0.0.0.0 && "$listen" != :: ]] || die "--listen must be one address, not $listen: it is also the advertise address and a certificate SAN"
  for v in "$port" "$etcd_port"; do [[ -z "$v" || "$v" =~ ^[0-9]+$ ]] || die "port '$v' is not a number"; done

  if [[ -e "$dir" ]]; then
    if our_pid "$dir" kube-apiserver >/dev/null || our_pid "$dir" etcd >/dev/null; then
      die "a control plane is already running in $dir; run: $0 down $dir"
    fi
    [[ -f "$dir/.berth-control-plane" || -z "$(ls -A "$dir")" ]] ||
      die "$dir exists and is not an empty directory nor a control-plane directory"
  fi
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  command -v ss >/dev/null || die "ss (iproute2) is required"

  local bin; bin="$(bin_dir)"
  for b in etcd kube-apiserver; do [[ -x "$bin/$b" ]] || die "$bin/$b not found (run build-control-plane.sh)"; done

  rm -rf "$dir"
  mkdir -p "$dir/pki" "$dir/etcd"
  chmod 700 "$dir" "$dir/etcd"
  touch "$dir/.berth-control-plane"
  local pki="$dir/pki"

  # On failure: show the logs, stop whatever started, keep DIR (logs) for `down` to remove.
  trap 'rc=$?; if ((rc != 0)); then tail_log "$UP_DIR" etcd; tail_log "$UP_DIR" kube-apiserver;
        stop_proc "$UP_DIR" kube-apiserver; stop_proc "$UP_DIR" etcd;
        log "up failed; logs are in $UP_DIR (remove it with: $0 down $UP_DIR)"; fi' EXIT

  # --- certificates: CA, apiserver serving cert, service-account keys, admin client cert
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=berth-e2e-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' 2>/dev/null
  local san_list="IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
  san_list+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1"
  [[ "$listen" == 127.0.0.1 ]] || san_list+=",IP:$listen"
  local s
  for s in "${sans[@]}"; do if is_ip "$s"; then san_list+=",IP:$s"; else san_list+=",DNS:$s"; fi; done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -days 3650 \
    -out "$pki/apiserver.crt" -extfile <(printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
      "subjectAltName=$san_list") 2>/dev/null
  rm -f "$pki/apiserver.csr"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  local admin; admin="$(mint_client_cert "$dir" admin system:masters)"
  chmod 600 "$pki"/*.key

  # --- etcd (loopback only), then kube-apiserver; random ports are retried on a collision
  local attempt e_port p_port a_port ok='' health=''
  for ((attempt = 1; attempt <= 5; attempt++)); do
    e_port="${etcd_port:-$(pick_port)}"
    p_port="$(pick_port "$e_port")"
    rm -rf "$dir/etcd" && mkdir -m 700 "$dir/etcd" # nothing from a failed attempt
    : >"$dir/etcd.log"
    start_proc "$dir" etcd "$bin/etcd" --name default --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$e_port" --advertise-client-urls "http://127.0.0.1:$e_port" \
      --listen-peer-urls "http://127.0.0.1:$p_port" --initial-advertise-peer-urls "http://127.0.0.1:$p_port" \
      --initial-cluster "default=http://127.0.0.1:$p_port" --unsafe-no-fsync=true --log-level warn
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
      our_pid "$dir" etcd >/dev/null || break
      health="$(curl -fsS -m 2 "http://127.0.0.1:$e_port/health" 2>/dev/null)" || health=
      if [[ "$health" == *'"health":"true"'* ]]; then ok=1; break; fi
      sleep 0.2
    done
    [[ -n "$ok" ]] && break
    local exited=''
    our_pid "$dir" etcd >/dev/null || exited=1
    stop_proc "$dir" etcd
    # Retry when a port we picked was taken meanwhile (not when --etcd-port was).
    if grep -qF "127.0.0.1:$p_port: bind: address already in use" "$dir/etcd.log" ||
      { [[ -z "$etcd_port" ]] && grep -q 'address already in use' "$dir/etcd.log"; }; then
      log "etcd port collision; retrying"; continue
    fi
    [[ -n "$exited" ]] && die "etcd exited during startup"
    die "etcd did not become healthy within 30s"
  done
  [[ -n "$ok" ]] || die "etcd: no free ports after 5 attempts"

  ok=
  local server
  for ((attempt = 1; attempt <= 5; attempt++)); do
    a_port="${port:-$(pick_port "$e_port" "$p_port")}"
    server="https://$(url_host "$listen"):$a_port"
    : >"$dir/kube-apiserver.log"
    start_proc "$dir" kube-apiserver "$bin/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$e_port" \
      --bind-address "$listen" --advertise-address "$listen" --secure-port "$a_port" \
      --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
      --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
      --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
      --service-account-issuer "$server" --service-account-key-file "$pki/sa.pub" \
      --service-account-signing-key-file "$pki/sa.key" \
      --profiling=false --v=1
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
      our_pid "$dir" kube-apiserver >/dev/null || break
      if curl -fsS -m 5 --cacert "$pki/ca.crt" --cert "$admin.crt" --key "$admin.key" \
        "$server/readyz" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.5
    done
    [[ -n "$ok" ]] && break
    if ! our_pid "$dir" kube-apiserver >/dev/null && [[ -z "$port" ]] &&
      grep -q 'address already in use' "$dir/kube-apiserver.log"; then
      log "kube-apiserver port collision; retrying"; continue
    fi
    our_pid "$dir" kube-apiserver >/dev/null || die "kube-apiserver exited during startup"
    stop_proc "$dir" kube-apiserver
    die "kube-apiserver did not become ready at $server within ${timeout}s"
  done
  [[ -n "$ok" ]] || die "kube-apiserver: no free port after 5 attempts"

  write_kubeconfig "$dir/admin.kubeconfig" "$server" "$pki/ca.crt" "$admin.crt" "$admin.key" admin

  # /readyz does not wait for the system namespaces; tests expect `default` to exist.
  deadline=$((SECONDS + 60)); ok=
  while ((SECONDS < deadline)); do
    if curl -fsS -m 5 --cacert "$pki/ca.crt" --cert "$admin.crt" --key "$admin.key" \
      "$server/api/v1/namespaces/default" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [[ -n "$ok" ]] || die "namespace default was not created within 60s"

  cat >"$dir/env" <<EOF
# Source this file to talk to the control plane in $dir.
export KUBECONFIG='$dir/admin.kubeconfig'
BERTH_CP_DIR='$dir'
BERTH_CP_SERVER='$server'
BERTH_CP_CA='$pki/ca.crt'
BERTH_CP_ETCD='http://127.0.0.1:$e_port'
BERTH_CP_BIN='$bin'
EOF
  trap - EXIT
  log "up: kube-apiserver $server (etcd 127.0.0.1:$e_port), logs in $dir/*.log"
  echo "$dir/admin.kubeconfig"
}

# --- kubeconfig --------------------------------------------------------------------------

cmd_kubeconfig() {
  [[ $# -ge 2 ]] || usage
  local dir; dir="$(abs_dir "$1")"; local name="$2"; shift 2
  [[ -f "$dir/.berth-control-plane" && -f "$dir/pki/ca.key" && -f "$dir/env" ]] ||
    die "$dir is not a running control plane (run: $0 up $dir)"
  valid_name "$name" || die "user name '$name' must match [A-Za-z0-9][A-Za-z0-9:._@-]*"
  local g
  for g in "$@"; do valid_name "$g" || die "group '$g' must match [A-Za-z0-9][A-Za-z0-9:._@-]*"; done
  local server; server="$(sed -n "s/^BERTH_CP_SERVER='\(.*\)'$/\1/p" "$dir/env")"
  local base; base="$(mint_client_cert "$dir" "$name" "$@")"
  chmod 600 "$base.key"
  local file="$dir/${name//[^A-Za-z0-9:._@-]/_}.kubeconfig"
  write_kubeconfig "$file" "$server" "$dir/pki/ca.crt" "$base.crt" "$base.key" "$name"
  echo "$file"
}

# --- status / down -----------------------------------------------------------------------

cmd_status() {
  [[ $# -eq 1 ]] || usage
  local dir; dir="$(abs_dir "$1")"
  [[ -f "$dir/env" ]] || { log "no control plane in $dir"; return 1; }
  our_pid "$dir" etcd >/dev/null || { log "etcd is not running"; return 1; }
  our_pid "$dir" kube-apiserver >/dev/null || { log "kube-apiserver is not running"; return 1; }
  local server; server="$(sed -n "s/^BERTH_CP_SERVER='\(.*\)'$/\1/p" "$dir/env")"
  curl -fsS -m 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/client-admin.crt" \
    --key "$dir/pki/client-admin.key" "$server/readyz" >/dev/null || { log "$server/readyz failed"; return 1; }
  log "running: $server"
}

cmd_down() {
  [[ $# -eq 1 ]] || usage
  local dir; dir="$(abs_dir "$1")"
  [[ -e "$dir" ]] || return 0
  [[ -f "$dir/.berth-control-plane" ]] || die "$dir is not a control-plane directory; not touching it"
  stop_proc "$dir" kube-apiserver
  stop_proc "$dir" etcd
  rm -rf -- "$dir"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  kubeconfig) shift; cmd_kubeconfig "$@" ;;
  status) shift; cmd_status "$@" ;;
  -h | --help | help | "") usage ;;
  *) die "unknown command '$1' (up, down, kubeconfig, status)" ;;
esac
