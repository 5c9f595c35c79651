# shellcheck shell=bash
# The CSI half of the node (sourced by cluster.sh after node.sh): our test-only CSI driver
# (kind-tests/csi-driver), csi-provisioner, csi-snapshotter and snapshot-controller, as processes
# on this host like the kubelet. The driver registers itself with the kubelet (plugin-registration
# socket in the kubelet's plugins_registry), so no node-driver-registrar is needed. Each sidecar
# has its own client certificate (user hort:<name>) bound to the ClusterRole that upstream's
# deploy manifests give it. Uses the variables and helpers of cluster.sh and node.sh.

CSI_DRIVER_NAME="csi.hort.test"
CSI_DIR="$STATE/csi"                                        # volumes, snapshots (driver state)
CSI_SOCK="$STATE/kubelet/plugins/$CSI_DRIVER_NAME/csi.sock" # the kubelet and the sidecars
CSI_RBAC="$CACHE/csi-rbac/snapshotter-$SNAPSHOTTER_VERSION-provisioner-$PROVISIONER_VERSION"
CSI_PROCS=(hort-csi-driver snapshot-controller csi-snapshotter csi-provisioner)
# Copies of large volumes take a while on filesystems without reflinks (ext4).
CSI_TIMEOUT=300s

csi_kubeconfigs() {
  local n
  for n in csi-provisioner csi-snapshotter snapshot-controller; do
    gen_cert "$n" "/CN=hort:$n" ca client
    [[ -f "$KC/$n.kubeconfig" ]] || write_kubeconfig "$KC/$n.kubeconfig" "hort:$n" "$n"
  done
}

# The ClusterRoles of upstream's RBAC manifests (their ServiceAccounts, bindings and
# leader-election Roles are left out: the processes run with certificates, without leader
# election; manifests/csi.yaml binds the users).
csi_apply_rbac() {
  awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: ClusterRole\n/ { print; print "---" }' "$CSI_RBAC"/rbac-*.yaml \
    | kubectl apply -f - >"$LOGS/csi-rbac-apply.log" 2>&1 \
    || { cat "$LOGS/csi-rbac-apply.log" >&2; die "applying the CSI sidecars' ClusterRoles failed"; }
}

csi_registered() { # the kubelet registered the driver: CSINode lists it
  kubectl get csinode "$NODE_NAME" -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -qw "$CSI_DRIVER_NAME"
}

csi_up() {
  local b
  for b in "${CSI_PROCS[@]}"; do
    [[ -x "$BIN/$b" ]] || { "$HERE/build.sh" csi; break; }
  done
  [[ -f "$CSI_RBAC/.ready" ]] || "$HERE/build.sh" csi
  mkdir -p "$CSI_DIR"
  csi_kubeconfigs
  csi_apply_rbac
  start_proc hort-csi-driver "$BIN/hort-csi-driver" \
    --name "$CSI_DRIVER_NAME" \
    --endpoint "$CSI_SOCK" \
    --node-id "$NODE_NAME" \
    --state-dir "$CSI_DIR" \
    --registration-dir "$STATE/kubelet/plugins_registry"
  start_proc snapshot-controller "$BIN/snapshot-controller" \
    --kubeconfig "$KC/snapshot-controller.kubeconfig" \
    --leader-election=false \
    --v="$LOG_V"
  start_proc csi-snapshotter "$BIN/csi-snapshotter" \
    --kubeconfig "$KC/csi-snapshotter.kubeconfig" \
    --csi-address "$CSI_SOCK" \
    --leader-election=false \
    --timeout "$CSI_TIMEOUT" \
    --v="$LOG_V"
  start_proc csi-provisioner "$BIN/csi-provisioner" \
    --kubeconfig "$KC/csi-provisioner.kubeconfig" \
    --csi-address "$CSI_SOCK" \
    --leader-election=false \
    --timeout "$CSI_TIMEOUT" \
    --v="$LOG_V"
  wait_for "the kubelet to register $CSI_DRIVER_NAME (CSINode $NODE_NAME)" 60 hort-csi-driver csi_registered
  for b in snapshot-controller csi-snapshotter csi-provisioner; do require_running "$b"; done
  log "CSI driver $CSI_DRIVER_NAME registered; StorageClass hort-csi, VolumeSnapshotClass hort-csi"
}

csi_down() {
  local i
  # sidecars first, the driver last (they call it)
  for ((i = ${#CSI_PROCS[@]} - 1; i >= 0; i--)); do stop_proc "${CSI_PROCS[$i]}"; done
}

# After everything below $STATE is unmounted: the volumes and snapshots.
csi_remove_state() { rm -rf "$CSI_DIR"; }
