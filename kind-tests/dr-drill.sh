#!/usr/bin/env bash
# The disaster-recovery drill: Hort rebuilds two namespaces' protection and data from storage
# alone, in a new cluster.
#
#   kind-tests/dr-drill.sh        (the local cluster up, images built; scripts/test.sh runs it last)
#
# 1. In the running cluster: namespaces hort-dr-shop (PostgreSQL and a volume) and hort-dr-billing
#    (MariaDB), each with a StorageGroup `offsite` on an S3 server outside the cluster
#    (kind-tests/dr-s3.sh: a network namespace of its own, so it outlives the cluster) and
#    Schedules; one backup of each Schedule (`kubectl hort backup now`).
# 2. The cluster is torn down completely (`cluster.sh down`: etcd, the node, every volume).
# 3. A new cluster: the chart, and in each namespace what the runbook says the user brings (the
#    group's Secrets and its StorageGroup, the applications: empty database servers, an empty
#    claim, their Secrets); then `kubectl hort dr offsite --apply`.
# 4. The data, the Schedules and the StorageGroups must equal the originals. The recovery time
#    from the empty cluster to verified data is printed with its parts.
# Besides, namespace hort-dr-tenant backs up a claim through a ClusterStorageGroup (its
# repository under `shared/tenants/hort-dr-tenant/` of the same server); between the teardown and
# the new cluster the CLI alone (`hort-agent` with HORT_TENANT, the tenant root secret and the
# storage credentials) lists and restores that snapshot, and the files must equal the originals.
# Leaves the new cluster up with Hort installed (scripts/test.sh brings it down).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kind-tests/lib.sh
source "$HERE/lib.sh"
KUBECONFIG="$("$HERE/cluster.sh" kubeconfig)"
export KUBECONFIG
eval "$("$HERE/dr-s3.sh" env)"

SHOP=hort-dr-shop BILLING=hort-dr-billing GROUP=offsite DB_PASSWORD=dr-db-password
TENANT=hort-dr-tenant SHARED=dr-shared
AGENT="$HORT_REPO_DIR/target/release/hort-agent"
[[ -x "$AGENT" ]] || { echo "dr-drill.sh: no $AGENT (scripts/build-hort.sh builds it)" >&2; exit 1; }
WORK="$(mktemp -d)"
ROOT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$ROOT_SECRET" >"$WORK/root-secret"
PLUGIN="$(plugin_bin)" || { echo "dr-drill.sh: no kubectl-hort binary (scripts/build-hort.sh builds it)" >&2; exit 1; }
hort() { "$PLUGIN" "$@"; }
fail() { echo "dr-drill.sh: FAILED CHECK: $*" >&2; exit 1; }
step() { printf '== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)" >&2; }
trap '"$HERE/dr-s3.sh" down; rm -rf "$WORK"' EXIT

# What the user keeps outside the cluster and brings to a new one: the group's Secrets and its
# StorageGroup (the same password each time), the database Secret.
group_and_secrets() { # NS
  local ns="$1"
  new_namespace "$ns"
  usable_secret "$ns" hort-repository-password --from-literal=password="dr-$ns-password"
  usable_secret "$ns" s3-credentials --from-literal=AWS_ACCESS_KEY_ID="$DR_S3_ACCESS_KEY" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$DR_S3_SECRET_KEY"
  s3_group "$ns" "$GROUP" "$DR_S3_ENDPOINT" "$DR_S3_BUCKET" "$ns"
}

# The applications' own manifests: database servers, their Secret, the claim of the volume.
applications() {
  deploy_postgres "$SHOP" "$DB_PASSWORD"
  deploy_mariadb "$BILLING" "$DB_PASSWORD"
  usable_secret "$SHOP" db-credentials --from-literal=username=postgres --from-literal=password="$DB_PASSWORD"
  usable_secret "$BILLING" db-credentials --from-literal=username=root --from-literal=password="$DB_PASSWORD"
  kc -n "$SHOP" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: media, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
  wait_servers "$SHOP" postgres
  wait_servers "$BILLING" mariadb
}

# schedule NS NAME SOURCE-YAML: a nightly Schedule (it does not fire during the drill).
schedule() {
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: Schedule
metadata: {name: $2}
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Berlin
  retention: {keepDaily: 7, keepWeekly: 4}
  jobTemplate:
    spec:
      storageGroupRef: {name: $GROUP}
      tags: [dr-drill]
      source:
        $3
EOF
}

# The data, as one line per source: row counts and sums, file checksums.
fingerprint() {
  psql_in "$SHOP" "select 'orders', count(*), sum(amount) from orders" shop
  mariadb_in "$BILLING" "select 'invoices', count(*), sum(total) from invoices" billing
  run_pod "$SHOP" sums hort.local/busybox:stable 'cd /media && find . -type f | sort | xargs md5sum' media /media
}

# The specs of the StorageGroups and Schedules, sorted, as JSON.
specs() {
  local ns
  for ns in "$SHOP" "$BILLING"; do
    kc -n "$ns" get storagegroups,schedules -o json \
      | python3 -c 'import json,sys; print(json.dumps(sorted([[i["kind"], i["metadata"]["namespace"], i["metadata"]["name"], i["spec"]] for i in json.load(sys.stdin)["items"]]), sort_keys=True))'
  done
}

# A tenant of ClusterStorageGroup $SHARED: the platform team's StorageGroup and tenant root
# secret in Hort's namespace, the tenant's claim and one backup through the group's proxy.
# Sets TENANT_ID to the snapshot's id.
tenant_backup() {
  local op=$HORT_NAMESPACE
  usable_secret $op hort-repository-password --from-literal=password="dr-shared-password"
  usable_secret $op s3-credentials --from-literal=AWS_ACCESS_KEY_ID="$DR_S3_ACCESS_KEY" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$DR_S3_SECRET_KEY"
  s3_group $op shared-offsite "$DR_S3_ENDPOINT" "$DR_S3_BUCKET" shared
  new_namespace "$TENANT"
  kc label namespace "$TENANT" hort.dev/dr-shared=yes >/dev/null
  shared_group "$SHARED" shared-offsite hort.dev/dr-shared "$ROOT_SECRET"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: files, namespace: $TENANT, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
EOF
  run_pod "$TENANT" writer hort.local/busybox:stable \
    'set -e; cd /files; mkdir -p x; head -c 1000000 /dev/urandom > x/blob.bin; echo tenant > x/t.txt; sync' files /files >/dev/null
  wait_ready default "clusterstoragegroup/$SHARED" 300 || fail "ClusterStorageGroup $SHARED not Ready"
  kc -n "$TENANT" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: files}
spec:
  storageGroupRef: {kind: ClusterStorageGroup, name: $SHARED}
  source: {volume: {claimName: files}}
EOF
  wait_phase "$TENANT" backupjob/files Succeeded 300 || fail "the tenant's backup did not succeed"
  TENANT_ID="$(jp "$TENANT" backupjob/files '{.status.snapshotId}')"
}

# The CLI alone, outside any cluster, on the tenant's repository: `hort-agent ARGS...`.
tenant_cli() {
  env -i PATH="$PATH" AWS_EC2_METADATA_DISABLED=true \
    HORT_REPOSITORY="s3://$DR_S3_BUCKET/shared?endpoint=$DR_S3_ENDPOINT&region=us-east-1&path-style=true" \
    AWS_ACCESS_KEY_ID="$DR_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$DR_S3_SECRET_KEY" \
    HORT_TENANT="$TENANT" HORT_TENANT_ROOT_SECRET_FILE="$WORK/root-secret" "$AGENT" "$@"
}

# Hort's namespace is absent or active: e2e.sh's cleanup deletes it without waiting, and helm
# cannot install into a namespace being deleted.
hort_namespace_usable() {
  local phase
  phase="$(kc get namespace "$HORT_NAMESPACE" -o jsonpath='{.status.phase}' 2>/dev/null)" || return 0
  [[ "$phase" != Terminating ]]
}

# ---- 1. the cluster before the disaster
step "S3 outside the cluster, Hort, two namespaces with data and Schedules"
"$HERE/dr-s3.sh" up
wait_until 180 "namespace $HORT_NAMESPACE deleted by the e2e cleanup" hort_namespace_usable
install_hort
group_and_secrets "$SHOP"
group_and_secrets "$BILLING"
applications
psql_in "$SHOP" "create database shop" >/dev/null
psql_in "$SHOP" "create table orders (id int primary key, amount numeric); insert into orders select i, i * 1.25 from generate_series(1, 5000) i" shop >/dev/null
mariadb_in "$BILLING" "create database billing" >/dev/null
mariadb_in "$BILLING" "create table invoices (id int primary key, total decimal(10,2)); insert into invoices select seq, seq * 2.5 from seq_1_to_3000" billing >/dev/null
run_pod "$SHOP" writer hort.local/busybox:stable \
  'set -e; cd /media; mkdir -p a/b; head -c 3000000 /dev/urandom > a/b/photo.bin; echo hello > a/note.txt; sync' media /media >/dev/null
schedule "$SHOP" shop-db "postgres: {host: postgres.$SHOP.svc, credentialsSecretRef: {name: db-credentials}, databases: [shop]}"
schedule "$SHOP" shop-media "volume: {claimName: media}"
schedule "$BILLING" billing-db "mariadb: {host: mariadb.$BILLING.svc, credentialsSecretRef: {name: db-credentials}, databases: [billing]}"
wait_ready "$SHOP" "storagegroup/$GROUP" 180
wait_ready "$BILLING" "storagegroup/$GROUP" 180
for s in "$SHOP shop-db" "$SHOP shop-media" "$BILLING billing-db"; do
  read -r ns name <<<"$s"
  hort -n "$ns" backup now "$name" >/dev/null || fail "backup now $name in $ns failed"
done
step "a tenant of a ClusterStorageGroup backs up through the group's proxy"
tenant_backup
tenant_id="$TENANT_ID"
[[ -n "$tenant_id" ]] || fail "the tenant's backup recorded no snapshot id"
tenant_sums="$(run_pod "$TENANT" sums hort.local/busybox:stable 'cd /files && find . -type f | sort | xargs md5sum' files /files)"
before_data="$(fingerprint)"
before_specs="$(specs)"
note "data: $(tr '\n' ';' <<<"$before_data" | cut -c1-200)"

# ---- 2. the disaster
step "the cluster torn down (etcd, node, volumes)"
"$HERE/cluster.sh" down >/dev/null
step "the tenant's snapshot listed and restored by the CLI alone (tenant root secret, storage credentials)"
tenant_cli snapshots --json | grep -q "$tenant_id" || fail "the CLI does not list the tenant's snapshot $tenant_id"
tenant_cli restore "$tenant_id" --target "$WORK/tenant" >/dev/null || fail "the CLI could not restore the tenant's snapshot"
restored_sums="$(cd "$WORK/tenant" && find . -type f | sort | xargs md5sum)"
[[ "$restored_sums" == "$tenant_sums" ]] || fail "the tenant's restored files differ: before: $tenant_sums; after: $restored_sums"
note "tenant $TENANT: snapshot $tenant_id restored by the CLI, files equal"

# ---- 3. a new cluster, rebuilt from storage
T_EMPTY=$EPOCHREALTIME
step "a new cluster"
"$HERE/cluster.sh" up >/dev/null
"$HERE/dr-s3.sh" allow
t_cluster="$(since "$T_EMPTY")"
t0=$EPOCHREALTIME
"$HERE/images.sh" import >/dev/null
t_images="$(since "$t0")"
t0=$EPOCHREALTIME
install_hort
t_chart="$(since "$t0")"
t0=$EPOCHREALTIME
group_and_secrets "$SHOP"
group_and_secrets "$BILLING"
applications
wait_ready "$SHOP" "storagegroup/$GROUP" 180
wait_ready "$BILLING" "storagegroup/$GROUP" 180
t_user="$(since "$t0")"
t0=$EPOCHREALTIME
step "kubectl hort dr $GROUP --apply, in each namespace"
for ns in "$SHOP" "$BILLING"; do
  out="$(hort -n "$ns" dr "$GROUP" --list --operator-namespace "$HORT_NAMESPACE" 2>&1)" || fail "dr --list in $ns: $out"
  note "dr --list in $ns: $(tr -s ' ' <<<"$out" | tr '\n' ';' | cut -c1-400)"
  out="$(hort -n "$ns" dr "$GROUP" --apply --timeout 600 --operator-namespace "$HORT_NAMESPACE" 2>&1)" || fail "dr --apply in $ns: $out"
  note "dr --apply in $ns: $(tr -s ' ' <<<"$out" | tr '\n' ';' | cut -c1-400)"
done
t_dr="$(since "$t0")"
t0=$EPOCHREALTIME

# ---- 4. what came back
after_data="$(fingerprint)"
[[ "$after_data" == "$before_data" ]] || fail "restored data differs: before: $before_data; after: $after_data"
T_VERIFIED=$EPOCHREALTIME
t_check="$(since "$t0")"
after_specs="$(specs)"
[[ "$after_specs" == "$before_specs" ]] || fail "StorageGroups/Schedules differ: before: $before_specs; after: $after_specs"
rto="$(awk -v a="$T_EMPTY" -v b="$T_VERIFIED" 'BEGIN { printf "%.1f", b - a }')"
echo "dr-drill: PASS: data, 2 StorageGroups and 3 Schedules equal the originals; a tenant's files restored by the CLI alone"
echo "dr-drill: RTO ${rto}s from an empty cluster to verified data: cluster up ${t_cluster}s, images ${t_images}s, chart ${t_chart}s, the user's Secrets, groups and applications ${t_user}s, kubectl hort dr ${t_dr}s, reading the data back ${t_check}s"
