#!/usr/bin/env bash
# A real single-node Kubernetes cluster for Hort's tests, built from upstream.
#
#   kind-tests/cluster.sh up [--control-plane-only]   start (idempotent; prints elapsed time)
#   kind-tests/cluster.sh down                        stop what `up` started, remove its state
#   kind-tests/cluster.sh status                      show components and node
#   kind-tests/cluster.sh kubeconfig                  print the admin kubeconfig path
#   kind-tests/cluster.sh audit-log                   print the API server's audit log path
#
# If `kind` and a working Docker engine are present, `kind` is used instead (cluster "hort").
# Otherwise the components built by build.sh run as plain processes on this host. All state,
# logs and pid files live under one directory: ${HORT_CLUSTER_DIR:-~/.cache/hort/cluster}.
#
# --control-plane-only: etcd + kube-apiserver + kube-controller-manager, no node (enough for
# CRD/CEL validation, status subresources, watches and RBAC). A later `up` adds the node.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

CACHE="${HORT_CACHE:-$HOME/.cache/hort}"
STATE="${HORT_CLUSTER_DIR:-$CACHE/cluster}"
# A running cluster keeps the release it was started with.
if [[ -f "$STATE/k8s-version" ]]; then
  if [[ -n "${HORT_K8S_VERSION:-}" && "$HORT_K8S_VERSION" != "$(cat "$STATE/k8s-version")" && "${1:-}" == up ]]; then
    echo "cluster.sh: error: the cluster in $STATE runs $(cat "$STATE/k8s-version"); run 'down' first" >&2
    exit 1
  fi
  K8S_VERSION="$(cat "$STATE/k8s-version")"
fi
BIN="$CACHE/bin/$K8S_VERSION"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KC="$STATE/kubeconfigs"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"
AUDIT_LOG="$LOGS/audit.log"
SNAPSHOT_CRDS="$CACHE/crds/external-snapshotter-$SNAPSHOTTER_VERSION"

NODE_NAME="${HORT_NODE_NAME:-hort-node}"
APISERVER_PORT="${HORT_APISERVER_PORT:-6443}"
ETCD_CLIENT_PORT="${HORT_ETCD_PORT:-12379}"
ETCD_PEER_PORT="$((ETCD_CLIENT_PORT + 1))"
# Second control planes on one host (other HORT_APISERVER_PORT) get their own health ports.
if [[ "$APISERVER_PORT" == 6443 ]]; then _cm=10257 _sched=10259; else _cm=$((APISERVER_PORT + 1)) _sched=$((APISERVER_PORT + 2)); fi
CONTROLLER_MANAGER_PORT="${HORT_CONTROLLER_MANAGER_PORT:-$_cm}"
SCHEDULER_PORT="${HORT_SCHEDULER_PORT:-$_sched}"
LOG_V="${HORT_LOG_V:-0}"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SVC_IP="10.96.0.1"
DNS_SVC_IP="10.96.0.10"
CLUSTER_CIDR="10.244.0.0/16"
POD_SUBNET="10.244.0.0/24"
BRIDGE="hort0"
KIND_CLUSTER="hort"

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
T0_NS="$(date +%s%N)"
log() { local ms=$((($(date +%s%N) - T0_NS) / 1000000)); printf 'cluster.sh [%d.%01ds]: %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2; }

kubectl() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

use_kind() {
  [[ "${HORT_NO_KIND:-}" == 1 ]] && return 1
  command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

host_ip() {
  # The address of the interface holding the default route: the apiserver advertises it and the
  # kubelet registers it as the node's InternalIP. Traffic to it never leaves this host.
  local ip
  ip="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)"
  [[ -n "$ip" ]] || ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [[ -n "$ip" ]] || die "cannot determine this host's IPv4 address"
  echo "$ip"
}

# ------------------------------------------------------------------ processes
pid_of() { local f="$PIDS/$1.pid"; [[ -f "$f" ]] && head -n1 "$f"; }

is_running() { # name
  local pid; pid="$(pid_of "$1")" || return 1
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  # guard against a reused pid: the command line must still name the binary we started
  local want; want="$(sed -n 2p "$PIDS/$1.pid")"
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$want"
}

start_proc() { # name binary args...
  local name="$1" bin="$2"; shift 2
  if is_running "$name"; then log "$name already running (pid $(pid_of "$name"))"; return 0; fi
  [[ -x "$bin" ]] || die "$bin not found: run kind-tests/build.sh"
  mkdir -p "$LOGS" "$PIDS"
  setsid "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  printf '%s\n%s\n' "$pid" "$bin" >"$PIDS/$name.pid"
  # Until the forked shell has exec'd, its command line does not name the binary and
  # is_running would call the process dead: wait for the exec (or the exit).
  local _
  for _ in $(seq 1 100); do
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$bin" && break
    alive "$pid" || break
    sleep 0.02
  done
  log "started $name (pid $pid, log $LOGS/$name.log)"
}

# A process that exited but was not reaped yet (a zombie) counts as gone.
alive() { [[ -d "/proc/$1" ]] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

stop_proc() { # name
  local name="$1" pid
  pid="$(pid_of "$name")" || return 0
  if is_running "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$PIDS/$name.pid"
}

wait_for() { # description timeout_seconds process-name|- command...
  local what="$1" timeout="$2" proc="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [[ "$proc" == - ]] || require_running "$proc"
    if ((SECONDS >= deadline)); then
      die "timed out after ${timeout}s waiting for $what (logs in $LOGS)"
    fi
    sleep 0.5
  done
}

require_running() { # name: fail fast with the tail of its log if it died
  is_running "$1" && return 0
  echo "---- last lines of $LOGS/$1.log" >&2
  tail -n 30 "$LOGS/$1.log" >&2 || true
  die "$1 is not running"
}

port_busy() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

pick_port() { # name preferred: the preferred port, or the next free one (another cluster may hold it)
  local name="$1" p="$2" f="$STATE/ports"
  local saved; saved="$(awk -v n="$name" '$1 == n {print $2}' "$f" 2>/dev/null)"
  if [[ -n "$saved" ]] && is_running "$name"; then echo "$saved"; return; fi
  while port_busy "$p"; do p=$((p + 100)); done
  { grep -v "^$name " "$f" 2>/dev/null || true; echo "$name $p"; } >"$f.tmp" && mv -f "$f.tmp" "$f"
  echo "$p"
}

# ------------------------------------------------------------------ certificates
openssl_ext() { # kind(client|server|both) sans
  local eku
  case "$1" in
    client) eku=clientAuth ;; server) eku=serverAuth ;; both) eku="clientAuth,serverAuth" ;;
  esac
  echo "basicConstraints=critical,CA:FALSE"
  echo "keyUsage=critical,digitalSignature,keyEncipherment"
  echo "extendedKeyUsage=$eku"
  [[ -n "$2" ]] && echo "subjectAltName=$2"
  return 0
}

gen_ca() { # name CN
  [[ -f "$PKI/$1.crt" ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$1.crt" 2>/dev/null
}

gen_cert() { # name subject ca kind sans
  local name="$1" subj="$2" ca="$3" kind="$4" sans="${5:-}"
  [[ -f "$PKI/$name.crt" ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl_ext "$kind" "$sans" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

write_kubeconfig() { # file user cert-name
  local file="$1" user="$2" cert="$3"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hort
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: hort
  context:
    cluster: hort
    user: $user
current-context: hort
EOF
  chmod 600 "$file"
}

gen_pki() {
  local ip; ip="$(host_ip)"
  mkdir -p "$PKI" "$KC"
  if [[ -f "$PKI/host-ip" && "$(cat "$PKI/host-ip")" != "$ip" ]]; then
    is_running kube-apiserver && die "host IP changed since the cluster was created: run 'down' first"
    log "host IP changed: regenerating certificates"
    rm -rf "${PKI:?}"/* "${KC:?}"/*
  fi
  echo "$ip" >"$PKI/host-ip"
  gen_ca ca hort-kubernetes-ca
  gen_ca front-proxy-ca hort-front-proxy-ca
  gen_cert apiserver "/CN=kube-apiserver" ca server \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$ip"
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" ca client
  gen_cert front-proxy-client "/CN=front-proxy-client" front-proxy-ca client
  gen_cert admin "/O=system:masters/CN=hort-admin" ca client
  gen_cert controller-manager "/CN=system:kube-controller-manager" ca client
  gen_cert scheduler "/CN=system:kube-scheduler" ca client
  gen_cert kube-proxy "/CN=system:kube-proxy" ca client
  gen_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" ca client
  gen_cert kubelet-serving "/CN=$NODE_NAME" ca server "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$ip"
  if [[ ! -f "$PKI/sa.key" ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  [[ -f "$ADMIN_KUBECONFIG" ]] || write_kubeconfig "$ADMIN_KUBECONFIG" hort-admin admin
  [[ -f "$KC/controller-manager.kubeconfig" ]] || write_kubeconfig "$KC/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  [[ -f "$KC/scheduler.kubeconfig" ]] || write_kubeconfig "$KC/scheduler.kubeconfig" system:kube-scheduler scheduler
  [[ -f "$KC/kube-proxy.kubeconfig" ]] || write_kubeconfig "$KC/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  [[ -f "$KC/kubelet.kubeconfig" ]] || write_kubeconfig "$KC/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
  return 0
}

# ------------------------------------------------------------------ control plane
start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  # --unsafe-no-fsync: a throwaway test cluster; fsync on this VM's disk makes every write slow.
  start_proc etcd "$BIN/etcd" \
    --name hort \
    --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "hort=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --log-level warn
}

etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'; }

# The audit policy: requests made by service accounts outside kube-system (Hort's operator, the
# local-path provisioner) at level Metadata (who, verb, resource, namespace, response code; never
# a request or response body, so no Secret value), nothing else. The controller-manager's
# controllers run as kube-system service accounts and would fill the log. kind-tests/e2e.sh
# compares the operator's requests in it with the chart's RBAC (kind-tests/rbac-audit).
write_audit_policy() {
  cat >"$STATE/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
}

start_apiserver() {
  write_audit_policy
  # Binds all addresses: kubectl and the host components use 127.0.0.1; pods reach it through
  # the kubernetes Service, which kube-proxy maps to the host's own address.
  # OwnerReferencesPermissionEnforcement (as on OpenShift): setting blockOwnerDeletion on an
  # owner reference needs `update` on the owner's finalizers subresource, which the chart grants.
  # The audit log keeps at most 200 MB and one rotated file.
  start_proc kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 0.0.0.0 \
    --secure-port "$APISERVER_PORT" \
    --advertise-address "$(cat "$PKI/host-ip")" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,OwnerReferencesPermissionEnforcement \
    --audit-policy-file "$STATE/audit-policy.yaml" \
    --audit-log-path "$AUDIT_LOG" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    --allow-privileged=true \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --profiling=false \
    --v="$LOG_V"
}

apiserver_ready() { kubectl get --raw /readyz >/dev/null; }

start_controller_manager() {
  is_running kube-controller-manager || CONTROLLER_MANAGER_PORT="$(pick_port kube-controller-manager "$CONTROLLER_MANAGER_PORT")"
  start_proc kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$KC/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$KC/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$KC/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$CONTROLLER_MANAGER_PORT" \
    --client-ca-file "$PKI/ca.crt" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --root-ca-file "$PKI/ca.crt" \
    --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" \
    --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true \
    --controllers '*,bootstrapsigner,tokencleaner' \
    --allocate-node-cidrs=true \
    --cluster-cidr "$CLUSTER_CIDR" \
    --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false \
    --v="$LOG_V"
}

saved_port() { awk -v n="$1" '$1 == n {print $2}' "$STATE/ports" 2>/dev/null; }

controller_manager_healthy() {
  curl -fsSk "https://127.0.0.1:$(saved_port kube-controller-manager)/healthz" | grep -q ok
}

start_scheduler() {
  is_running kube-scheduler || SCHEDULER_PORT="$(pick_port kube-scheduler "$SCHEDULER_PORT")"
  start_proc kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$KC/scheduler.kubeconfig" \
    --authentication-kubeconfig "$KC/scheduler.kubeconfig" \
    --authorization-kubeconfig "$KC/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false \
    --profiling=false \
    --v="$LOG_V"
}

scheduler_healthy() {
  curl -fsSk "https://127.0.0.1:$(saved_port kube-scheduler)/healthz" | grep -q ok
}

control_plane_up() {
  [[ -x "$BIN/etcd" && -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kubectl" \
     && -f "$SNAPSHOT_CRDS/.ready" ]] || "$HERE/build.sh" control-plane
  local need=() c
  for c in openssl curl ss; do command -v "$c" >/dev/null || need+=("$c"); done
  if ((${#need[@]})); then
    mkdir -p "$CACHE/logs"
    apt_install openssl curl iproute2
  fi
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  gen_pki
  start_etcd
  wait_for "etcd health" 60 etcd etcd_healthy
  start_apiserver
  local deadline=$((SECONDS + 120))
  until apiserver_ready 2>/dev/null; do
    require_running kube-apiserver
    ((SECONDS < deadline)) || die "kube-apiserver not ready after 120s (log: $LOGS/kube-apiserver.log)"
    sleep 0.5
  done
  log "kube-apiserver ready"
  start_controller_manager
  install_snapshot_crds
}

# The CSI snapshot CRDs (snapshot.storage.k8s.io: VolumeSnapshot, VolumeSnapshotContent,
# VolumeSnapshotClass; groupsnapshot.storage.k8s.io: VolumeGroupSnapshot*), as external-snapshotter
# publishes them, in every cluster including --control-plane-only (the operator's tests need the
# API). Server-side apply: idempotent, and no last-applied annotation on these large objects.
install_snapshot_crds() {
  kubectl apply --server-side --force-conflicts --field-manager hort-kind-tests -f "$SNAPSHOT_CRDS/" \
    >"$LOGS/snapshot-crds-apply.log" 2>&1 \
    || { cat "$LOGS/snapshot-crds-apply.log" >&2; die "applying the snapshot CRDs failed"; }
  kubectl wait --for condition=Established --timeout 60s -f "$SNAPSHOT_CRDS/" >/dev/null \
    || die "the snapshot CRDs did not become Established"
  log "snapshot CRDs $SNAPSHOTTER_VERSION installed"
}

control_plane_wait() {
  wait_for "kube-controller-manager health" 60 kube-controller-manager controller_manager_healthy
  # the default ServiceAccount is what most test pods/objects rely on
  wait_for "default ServiceAccount" 60 kube-controller-manager kubectl get serviceaccount default -n default
}

# ------------------------------------------------------------------ node
# shellcheck source=node.sh
source "$HERE/node.sh"
# shellcheck source=csi.sh
source "$HERE/csi.sh"

# ------------------------------------------------------------------ kind
kind_up() {
  local kc="$CACHE/kind-$KIND_CLUSTER.kubeconfig"
  mkdir -p "$CACHE"
  if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    kind create cluster --name "$KIND_CLUSTER" --image "kindest/node:$K8S_VERSION" --wait 120s --kubeconfig "$kc"
  fi
  kind get kubeconfig --name "$KIND_CLUSTER" >"$kc"
  [[ -f "$SNAPSHOT_CRDS/.ready" && -x "$BIN/kubectl" ]] || "$HERE/build.sh" control-plane
  "$BIN/kubectl" --kubeconfig "$kc" apply --server-side --force-conflicts --field-manager hort-kind-tests \
    -f "$SNAPSHOT_CRDS/" >/dev/null || die "applying the snapshot CRDs failed"
  log "kind: the snapshot CRDs are installed, but not the CSI test driver, its classes or the snapshot" \
      "controller and sidecars (they run as host processes in the plain-process cluster only)"
}

# ------------------------------------------------------------------ commands
cmd_up() {
  local cp_only=0
  for a in "$@"; do
    case "$a" in
      --control-plane-only) cp_only=1 ;;
      *) die "unknown option for up: $a" ;;
    esac
  done
  local t0=$SECONDS start_ns="$T0_NS"
  if use_kind; then kind_up; log "kind cluster '$KIND_CLUSTER' up"; return 0; fi
  [[ $EUID -eq 0 ]] || die "must run as root (the node needs mounts, iptables and cgroups)"
  mkdir -p "$STATE"
  echo "$K8S_VERSION" >"$STATE/k8s-version"
  if ((cp_only)); then
    [[ -f "$STATE/mode" ]] || echo "cp-only" >"$STATE/mode"
  else
    echo "full" >"$STATE/mode"
  fi
  control_plane_up
  # the node starts while the controller-manager comes up
  ((cp_only)) || node_up
  control_plane_wait
  local ms=$((($(date +%s%N) - start_ns) / 1000000))
  log "cluster up ($(cat "$STATE/mode")) in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s; kubeconfig: $ADMIN_KUBECONFIG"
  : "$t0"
}

cmd_down() {
  if use_kind; then kind delete cluster --name "$KIND_CLUSTER"; return 0; fi
  if [[ ! -d "$STATE" ]]; then log "nothing to do ($STATE does not exist)"; return 0; fi
  [[ "$(cat "$STATE/mode" 2>/dev/null)" == cp-only ]] || node_down
  stop_proc kube-controller-manager
  stop_proc kube-apiserver
  stop_proc etcd
  unmount_below "$STATE"
  rm -rf "$STATE"
  log "cluster removed ($STATE)"
}

cmd_status() {
  if use_kind; then kind get clusters; return 0; fi
  if [[ ! -d "$STATE" ]]; then echo "down"; return 3; fi
  echo "state: $STATE (mode: $(cat "$STATE/mode" 2>/dev/null || echo unknown))"
  local n rc=0
  for n in etcd kube-apiserver kube-controller-manager containerd kube-scheduler kubelet kube-proxy "${CSI_PROCS[@]}"; do
    [[ -f "$PIDS/$n.pid" ]] || continue
    if is_running "$n"; then echo "  $n: running (pid $(pid_of "$n"))"; else echo "  $n: NOT RUNNING"; rc=1; fi
  done
  if apiserver_ready 2>/dev/null; then
    echo "  apiserver /readyz: ok"
    kubectl get nodes -o wide 2>/dev/null | sed 's/^/  /' || true
  else
    echo "  apiserver /readyz: not ready"; rc=1
  fi
  return $rc
}

# The audit log of the plain-process cluster. The kind mode sets up no audit log (kind's API
# server would need the policy file mounted into its node), so there the path is empty and
# callers skip what needs it.
cmd_audit_log() {
  if use_kind; then echo ""; return 0; fi
  echo "$AUDIT_LOG"
}

cmd_kubeconfig() {
  if use_kind; then echo "$CACHE/kind-$KIND_CLUSTER.kubeconfig"; return 0; fi
  echo "$ADMIN_KUBECONFIG"
}

# One up/down at a time per state directory (parallel test jobs may all call `up`).
lock() {
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster.sh holds $STATE.lock"
}

case "${1:-}" in
  up) shift; lock; cmd_up "$@" ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  kubeconfig) cmd_kubeconfig ;;
  audit-log) cmd_audit_log ;;
  *) echo "usage: $0 up [--control-plane-only] | down | status | kubeconfig | audit-log" >&2; exit 2 ;;
esac
