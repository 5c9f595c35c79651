# shellcheck shell=bash
# The node half of cluster.sh (sourced by it): containerd, kubelet, kube-proxy, kube-scheduler,
# CoreDNS, the local-path provisioner and (csi.sh) the CSI test driver with its sidecars. Uses
# the variables and helpers defined in cluster.sh.

CTRD="$STATE/containerd"
CTRD_SOCK="$CTRD/containerd.sock"
RUNC_ROOT="$STATE/runc"
CNI_CONF_DIR="$STATE/cni/net.d"
LOCAL_PATH_DIR="$STATE/local-path"
IMAGES="$CACHE/images"

# Write stdin to FILE only if the content differs (kube-proxy exits when its config file changes).
write_if_changed() {
  local f="$1" tmp; tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv -f "$tmp" "$f"; fi
}

ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

# ------------------------------------------------------------------ host preparation
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack podman buildah skopeo
               busybox-static debootstrap)

apt_install() { # packages...
  command -v apt-get >/dev/null || die "cannot install $* here (no apt-get): install them by hand"
  local lists; lists="$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)"
  [[ -n "$lists" ]] || apt-get update -qq >"$CACHE/logs/apt-update.log" 2>&1 || die "apt-get update failed (see $CACHE/logs/apt-update.log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$CACHE/logs/apt-install.log" 2>&1 \
    || { tail -n 20 "$CACHE/logs/apt-install.log" >&2; die "apt-get install $* failed"; }
}
check_node_prereqs() {
  local missing=() c
  for c in containerd containerd-shim-runc-v2 runc ctr iptables conntrack ip podman; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || missing+=("CNI plugins")
  command -v busybox >/dev/null 2>&1 || missing+=(busybox)
  if ((${#missing[@]})); then
    log "missing: ${missing[*]}; installing Debian's packages: ${NODE_PACKAGES[*]}"
    apt_install "${NODE_PACKAGES[@]}"
  fi
  grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)"
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] \
    || modprobe br_netfilter 2>/dev/null \
    || die "br_netfilter is not available (/proc/sys/net/bridge missing)"
}

set_sysctl() { # key value: remember the old value for `down`
  local key="$1" val="$2" f="/proc/sys/${1//.//}"
  [[ -e "$f" ]] || { log "warning: sysctl $key not available"; return 0; }
  local old; old="$(cat "$f")"
  grep -q "^$key " "$STATE/sysctl.saved" 2>/dev/null || echo "$key $old" >>"$STATE/sysctl.saved"
  [[ "$old" == "$val" ]] || echo "$val" >"$f"
}

host_prepare() {
  set_sysctl net.ipv4.ip_forward 1
  set_sysctl net.bridge.bridge-nf-call-iptables 1
  set_sysctl net.bridge.bridge-nf-call-ip6tables 1
  # Egress guard: pods may talk to pods, Services and this host, never beyond it.
  if ! iptables -w -L HORT-EGRESS -n >/dev/null 2>&1; then
    iptables -w -N HORT-EGRESS
    iptables -w -A HORT-EGRESS -d "$CLUSTER_CIDR" -j RETURN
    iptables -w -A HORT-EGRESS -j DROP
  fi
  iptables -w -C FORWARD -s "$CLUSTER_CIDR" -j HORT-EGRESS 2>/dev/null \
    || iptables -w -I FORWARD 1 -s "$CLUSTER_CIDR" -j HORT-EGRESS
  # CoreDNS has no upstream; pods using dnsPolicy Default get this file.
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$STATE/resolv.conf"
}

# Remove the KUBE-* chains and jumps that the kubelet and kube-proxy created (iptables and ip6tables).
# shellcheck disable=SC2120 # `set --` below parses saved rules, not arguments
cleanup_kube_iptables() {
  local ipt t rule chains c
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null 2>&1 || continue
    for t in filter nat mangle raw; do
      while read -r rule; do
        [[ -n "$rule" ]] || continue
        eval "set -- $rule"
        shift
        "$ipt" -w -t "$t" -D "$@" 2>/dev/null || true
      done < <("$ipt-save" -t "$t" 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true)
      chains="$("$ipt-save" -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')"
      for c in $chains; do "$ipt" -w -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -w -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
}

host_restore() {
  cleanup_kube_iptables
  iptables -w -D FORWARD -s "$CLUSTER_CIDR" -j HORT-EGRESS 2>/dev/null || true
  iptables -w -F HORT-EGRESS 2>/dev/null || true
  iptables -w -X HORT-EGRESS 2>/dev/null || true
  if [[ -f "$STATE/sysctl.saved" ]]; then
    local key val
    while read -r key val; do echo "$val" >"/proc/sys/${key//.//}" 2>/dev/null || true; done <"$STATE/sysctl.saved"
  fi
}

# ------------------------------------------------------------------ containerd
write_containerd_config() {
  mkdir -p "$CTRD/root" "$CTRD/state" "$CNI_CONF_DIR" "$STATE/cni/ipam" "$RUNC_ROOT"
  # Registry look-ups for the default registry and our own prefix go to a closed loopback port, so a
  # missing image fails at once instead of reaching for the network. Images are imported, not pulled.
  local h
  for h in docker.io hort.local registry.k8s.io quay.io ghcr.io; do
    mkdir -p "$CTRD/certs.d/$h"
    printf 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' \
      | write_if_changed "$CTRD/certs.d/$h/hosts.toml"
  done
  write_if_changed "$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "hort.local/pause:3.10"
    disable_apparmor = true
    # this sandbox denies lowering oom_score_adj (no CAP_SYS_RESOURCE): clamp to our own value
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$RUNC_ROOT"
          BinaryName = "${HORT_RUNC:-$(command -v runc)}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CTRD/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD/opt"
EOF
  write_if_changed "$CNI_CONF_DIR/10-hort.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "hort",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "${POD_SUBNET%.0/24}.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

start_containerd() {
  write_containerd_config
  start_proc containerd "$(command -v containerd)" --config "$CTRD/config.toml" --log-level warn
  wait_for "containerd socket" 30 containerd ctr_ version
}

import_images() { # tar files...
  local have; have="$(ctr_ images ls -q 2>/dev/null || true)"
  local t name
  for t in "$@"; do
    name="$(cat "$t.name")"
    if grep -qxF "$name" <<<"$have"; then continue; fi
    ctr_ images import --no-unpack=false "$t" >/dev/null 2>&1 || ctr_ images import "$t" >/dev/null \
      || die "importing $t into containerd failed"
    log "imported $name"
  done
}

# ------------------------------------------------------------------ kubelet / kube-proxy
write_kubelet_config() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  write_if_changed "$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
# this host mounts cgroup v1; from 1.35 the kubelet refuses that unless told (KEP-5573)
failCgroupV1: false
containerRuntimeEndpoint: unix://$CTRD_SOCK
clusterDomain: cluster.local
clusterDNS:
- $DNS_SVC_IP
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
failSwapOn: false
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
EOF
}

start_kubelet() {
  write_kubelet_config
  start_proc kubelet "$BIN/kubelet" \
    --config "$STATE/kubelet-config.yaml" \
    --kubeconfig "$KC/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$(cat "$PKI/host-ip")" \
    --v="$LOG_V"
}

start_kube_proxy() {
  write_if_changed "$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $KC/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
EOF
  start_proc kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy-config.yaml" --v="$LOG_V"
}

node_ready() {
  [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

coredns_answers() {
  busybox nslookup kubernetes.default.svc.cluster.local "$DNS_SVC_IP" 2>/dev/null | grep -q "$KUBERNETES_SVC_IP"
}

apply_addons() {
  local f
  for f in "$HERE"/manifests/*.yaml; do
    sed -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" \
        -e "s|@COREDNS_IMAGE@|hort.local/coredns:$COREDNS_VERSION|g" \
        -e "s|@LOCAL_PATH_IMAGE@|hort.local/local-path-provisioner:$LOCAL_PATH_VERSION|g" \
        -e "s|@BUSYBOX_IMAGE@|hort.local/busybox:stable|g" \
        -e "s|@LOCAL_PATH_DIR@|$LOCAL_PATH_DIR|g" "$f"
    echo "---"
  done | kubectl apply -f - >"$LOGS/addons-apply.log" 2>&1 \
    || { cat "$LOGS/addons-apply.log" >&2; die "applying addons failed"; }
}

node_up() {
  check_node_prereqs
  local b
  for b in kube-scheduler kubelet kube-proxy coredns local-path-provisioner pause; do
    [[ -x "$BIN/$b" ]] || { "$HERE/build.sh" node addons; break; }
  done
  "$HERE/images.sh" infra
  mkdir -p "$LOCAL_PATH_DIR"
  host_prepare
  start_containerd
  import_images "$IMAGES/pause.tar" "$IMAGES/busybox.tar" "$IMAGES/coredns.tar" "$IMAGES/local-path-provisioner.tar"
  start_scheduler
  start_kube_proxy
  start_kubelet
  local deadline=$((SECONDS + 120))
  until node_ready; do
    require_running kubelet
    require_running containerd
    ((SECONDS < deadline)) || die "node $NODE_NAME not Ready after 120s (log: $LOGS/kubelet.log)"
    sleep 0.5
  done
  log "node $NODE_NAME Ready"
  wait_for "kube-scheduler health" 60 kube-scheduler scheduler_healthy
  apply_addons
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null \
    || die "CoreDNS did not become available (kubectl -n kube-system describe pod -l k8s-app=kube-dns)"
  wait_for "CoreDNS to answer" 60 - coredns_answers
  log "CoreDNS answers on $DNS_SVC_IP"
  kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=120s >/dev/null \
    || die "local-path-provisioner did not become available"
  csi_up
}

# ------------------------------------------------------------------ teardown
unmount_below() { # dir
  local dir="$1" m
  # deepest first; field 5 of mountinfo is the mount point
  for m in $(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done
}

kill_containers() {
  # Every container that our containerd's runc shims started lives under our own runc root.
  local ns id
  for ns in "$RUNC_ROOT"/*/; do
    [[ -d "$ns" ]] || continue
    for id in $(runc --root "$ns" list -q 2>/dev/null); do
      runc --root "$ns" kill "$id" KILL 2>/dev/null || true
    done
    sleep 0.3
    for id in $(runc --root "$ns" list -q 2>/dev/null); do
      runc --root "$ns" delete --force "$id" 2>/dev/null || true
    done
  done
}

kill_shims() {
  # shims of our containerd carry our socket path on their command line
  local p
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "containerd-shim.*-address $CTRD_SOCK "; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

node_down() {
  csi_down
  stop_proc kubelet
  stop_proc kube-proxy
  stop_proc kube-scheduler
  kill_containers
  stop_proc containerd
  kill_shims
  unmount_below "$STATE"
  csi_remove_state
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ -x "$BIN/kube-proxy" ]] && [[ "$(cat "$STATE/mode" 2>/dev/null)" == full ]]; then
    "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  host_restore
  # empty pod cgroups the kubelet created (cgroupfs driver, cgroup v1 and the unified mount)
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}
