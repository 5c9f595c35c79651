#!/usr/bin/env bash
# Hort's quick start, one command on a fresh Debian 12 machine (as root):
#
#   scripts/quickstart.sh
#
# 1. builds the local cluster's binaries (kind-tests/build.sh; cached, ~16 min cold) and brings
#    up a single-node cluster (kind-tests/cluster.sh up);
# 2. builds hort-agent and hort-operator (cargo, release; scripts/build-hort.sh, in the cargo
#    target directory scripts/test.sh uses too, ~/.cache/hort/cargo-target) and their images,
#    and the S3 and PostgreSQL test images, without a registry, and imports them into the cluster;
# 3. installs the Helm chart (charts/hort) in hort-system;
# 4. deploys the sample of examples/quickstart/ in namespace hort-quickstart (recreated on
#    every run): an S3 server, PostgreSQL with a seeded table `orders` in database `shop`, a
#    StorageGroup, a BackupJob and a RestoreRequest that restores `shop` as `shop_restored`;
# 5. waits for the backup and the restore and compares the row counts.
#
# Each step prints its duration; a summary follows. Re-running is fine: what exists is kept
# (binaries, images, cluster, release) and the sample namespace is made anew.
# HORT_QUICKSTART_SKIP_BUILD=1 skips the cargo and image builds (uses the images already built).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=kind-tests/lib.sh
source kind-tests/lib.sh
NS=hort-quickstart
EXAMPLES=examples/quickstart

[[ $EUID -eq 0 ]] || { echo "quickstart.sh: run as root (the local cluster needs mounts, iptables and cgroups)" >&2; exit 1; }

T_ALL=$EPOCHREALTIME
SUMMARY=()
CURRENT=""
step() { # NAME COMMAND...: runs one step, prints and records its duration
  local name="$1" t0=$EPOCHREALTIME; shift
  CURRENT="$name"
  printf '\n== %s\n' "$name"
  "$@"
  local took; took="$(since "$t0")"
  printf '   done in %ss\n' "$took"
  SUMMARY+=("$(printf '%7ss  %s' "$took" "$name")")
}
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    echo >&2
    echo "quickstart.sh: FAILED at step: $CURRENT" >&2
    if kc get namespace "$NS" >/dev/null 2>&1; then dump_namespace "$NS"; fi
  fi
}
trap on_exit EXIT

build_cluster_binaries() { kind-tests/build.sh; }
cluster_up() { kind-tests/cluster.sh up; }
build_hort() { scripts/build-hort.sh; }
build_images() { kind-tests/images.sh build hort-agent hort-operator test-s3 test-postgres; }
import_images() { kind-tests/images.sh import hort-agent hort-operator test-s3 test-postgres; }
install_chart() {
  install_hort
  echo "   release $HORT_RELEASE in $HORT_NAMESPACE: operator $HORT_OPERATOR_IMAGE, agents $HORT_AGENT_IMAGE"
}
sample_servers() {
  if kc get namespace "$NS" >/dev/null 2>&1; then
    echo "   deleting the previous $NS"
    kc delete namespace "$NS" --wait=true --timeout=180s >/dev/null
  fi
  kc apply -f "$EXAMPLES/01-namespace.yaml" >/dev/null
  wait_until 60 "ServiceAccount default in $NS" kc -n "$NS" get serviceaccount default
  kc -n "$NS" apply -f "$EXAMPLES/02-s3.yaml" -f "$EXAMPLES/03-postgres.yaml" >/dev/null
  kc -n "$NS" rollout status deployment/s3 --timeout=180s >/dev/null
  kc -n "$NS" rollout status deployment/postgres --timeout=180s >/dev/null
  kc -n "$NS" wait --for=condition=Complete job/seed --timeout=180s >/dev/null
  ORIGINAL="$(psql_in "$NS" 'select count(*) from orders' shop)"
  echo "   S3 and PostgreSQL running; shop.orders has $ORIGINAL rows"
}
storage_group() {
  kc -n "$NS" apply -f "$EXAMPLES/04-storagegroup.yaml" >/dev/null
  wait_ready "$NS" storagegroup/s3 180
  echo "   StorageGroup s3 Ready: $(condition_message "$NS" storagegroup/s3 Ready)"
}
backup() {
  kc -n "$NS" apply -f "$EXAMPLES/05-backupjob.yaml" >/dev/null
  wait_phase "$NS" backupjob/shop-backup Succeeded 300
  echo "   BackupJob shop-backup Succeeded: snapshot $(jp "$NS" backupjob/shop-backup '{.status.snapshotId}'), $(jp "$NS" backupjob/shop-backup '{.status.stats.bytesRead}') bytes read, $(jp "$NS" backupjob/shop-backup '{.status.stats.storedSize}') stored"
}
restore() {
  kc -n "$NS" apply -f "$EXAMPLES/06-restore.yaml" >/dev/null
  wait_phase "$NS" restorerequest/shop-restore Succeeded 300
  echo "   RestoreRequest shop-restore Succeeded: $(jp "$NS" restorerequest/shop-restore '{.status.stats}')"
}
compare() {
  RESTORED="$(psql_in "$NS" 'select count(*) from orders' shop_restored)"
  echo "   shop.orders: $ORIGINAL rows; shop_restored.orders: $RESTORED rows"
  [[ "$ORIGINAL" == "$RESTORED" ]] || { echo "   the row counts differ" >&2; return 1; }
}

step "cluster binaries (kind-tests/build.sh)" build_cluster_binaries
step "cluster up (kind-tests/cluster.sh up)" cluster_up
KUBECONFIG="$(kind-tests/cluster.sh kubeconfig)"
export KUBECONFIG
if [[ "${HORT_QUICKSTART_SKIP_BUILD:-}" != 1 ]]; then
  step "hort-agent and hort-operator (scripts/build-hort.sh: cargo build --release)" build_hort
  step "images (kind-tests/images.sh build)" build_images
fi
step "images into the cluster (kind-tests/images.sh import)" import_images
step "Helm chart (charts/hort)" install_chart
step "sample S3 and PostgreSQL with data ($EXAMPLES/0[1-3]*)" sample_servers
step "StorageGroup Ready ($EXAMPLES/04-storagegroup.yaml)" storage_group
step "backup ($EXAMPLES/05-backupjob.yaml)" backup
step "restore as shop_restored ($EXAMPLES/06-restore.yaml)" restore
step "row counts compared" compare

printf '\n== quick start done in %ss\n' "$(since "$T_ALL")"
printf '%s\n' "${SUMMARY[@]}"
cat <<EOF

Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$(dirname "$KUBECTL"):\$PATH
  kubectl get hort -n $NS
  kubectl get backupjob shop-backup -n $NS -o yaml
  kubectl exec -n $NS deploy/postgres -- psql -U postgres -d shop_restored -c 'select count(*) from orders'
Remove the sample: kubectl delete namespace $NS; Hort: helm uninstall $HORT_RELEASE -n $HORT_NAMESPACE;
the cluster: kind-tests/cluster.sh down
EOF
