#!/usr/bin/env bash
# End-to-end tests of Hort in the local cluster, with real agent pods: the chart installed with
# the locally built images, an S3 server (s3s-fs), PostgreSQL and MariaDB in the cluster.
#
#   kind-tests/e2e.sh [--keep] [CASE...]     CASE: one of the names below (default: all)
#
# Needs `kind-tests/cluster.sh up` and the images (`scripts/build-hort.sh`, then
# `kind-tests/images.sh build hort-agent hort-operator test-s3
# test-postgres test-mariadb`); imports them into the cluster itself
# (HORT_E2E_SKIP_IMPORT=1 skips that). Each case runs in its own namespace hort-e2e-<case>;
# the servers live in hort-e2e-infra. At exit the namespaces and the release are removed
# (--keep leaves them for a look). Prints PASS/FAIL and the duration of every case and exits
# non-zero when one failed.
#
# Cases (each name is also its namespace's suffix):
#   groups-ready        StorageGroups on S3 and on a PVC become Ready (a check pod ran `check --init`)
#   wrong-s3-key        wrong S3 credentials: the group is not Ready with a clear message, a
#                       BackupJob waits
#   volume-restore      volume backup to S3 (snapshot id, stats), restore into a new claim, files
#                       compared; the repository password rotated by the group
#   populator           (the release runs with populator.enabled=true) a VolumeRestoreSource, a
#                       claim of the CSI test class naming it as dataSourceRef and a pod mounting
#                       the claim, applied at once: the pod reads www/ as backed up and nothing
#                       else; the claim's Populated Event; a local-path claim (its provisioner
#                       fills it empty) gets PopulateBypassed; no prime claim or restore pod left
#   postgres-rename     PostgreSQL backup to S3, one database restored under a new name, rows compared
#   verification        two Verifications of a PostgreSQL backup in a restricted namespace, each in
#                       a throwaway server beside its agent: a true assertion passes with its
#                       restore time, a false one fails naming it; no pod or password Secret left;
#                       a Verification of the repository reads every pack and passes, and after
#                       one pack is damaged on the S3 server fails naming it; two of a
#                       volume backup with a command of the user's over the
#                       restored files (read-only, non-root): exit 0 passes, exit 1 fails with
#                       its exit code and output
#   mariadb-table       MariaDB backup to a PVC target, one table restored, rows compared; a
#                       Verification in a throwaway MariaDB server checks row counts and an assertion
#   agent-killed        agent pod deleted mid-backup (its progress showed first): the BackupJob
#                       retries and succeeds; `verify` is clean; the restore shows its progress
#   operator-restart    operator pod deleted mid-backup: the job finishes once, with exactly one
#                       snapshot
#   schedule-retention  Schedule every minute with keepLast 1: two runs, prune ran, the old
#                       snapshot is gone; historyLimit lowered to 1 deletes the older jobs; the
#                       schedule's verifications restore into a temporary claim and check every
#                       file, and only the newest succeeded one is kept
#   invalid-specs       invalid specs are rejected by `kubectl apply` with a message naming the field
#   hooks               backup hooks run in the application pod (pre before the data is read, post
#                       after); a failing pre hook fails the job before any data is read, and the
#                       post hooks still run
#   mirror-outage       a Mirror group of an S3 server and a PVC: with the S3 server scaled to 0
#                       a Schedule's run succeeds and names the target behind, the group stays Ready
#                       (Degraded); back up, the group's check copies what it missed; with the PVC
#                       target's data deleted, a restore of the backup made during the outage matches
#   csi-snapshot        a writer appends checksummed records to three files on two claims; a CSI
#                       backup of one claim (snapshot between hooks that hold the writer) and one
#                       of both claims (claimSelector, one VolumeGroupSnapshot) restore whole
#                       records of one point in time; `snapshot: None` reads live and says so;
#                       no snapshot, group snapshot, content, temporary claim or pod is left
#   plugin              `kubectl hort` (the release binary kubectl-hort, or $HORT_PLUGIN) after a
#                       real volume backup: status, snapshots, ls, cat and download through an
#                       agent pod (the bytes equal the original's), backup now --from-job; an
#                       unknown group fails naming it; no agent pod is left; the overview page's
#                       snapshot browser, read with an `edit` token, lists the snapshot and a
#                       directory's files; headless Chromium through a port-forward
#                       (operator/tests/overview_e2e.rs) logs in with that token and sees a
#                       succeeded, a running and a failed job in their colours, nothing of
#                       another namespace, and the snapshot's files
#   namespaced          (runs first, before the cluster-wide install) a second release with
#                       operator.watchNamespace: only Roles; a PVC group, a volume backup with a
#                       hook and a restore work; none of its requests was forbidden; `helm test`
#                       passes, and fails once the operator is scaled to 0
#   tenants             a ClusterStorageGroup shares an S3 StorageGroup of the operator's namespace
#                       with two labelled namespaces: both get repositories and the proxy's two
#                       pods become available; each backs up a claim; one restores its snapshot (files equal),
#                       the other cannot restore that snapshot by id; a third, unlabelled
#                       namespace's job fails NamespaceNotAllowed without a pod; tenant pods name
#                       no Secret but hort-tenant-<group>; deleting the group removes its proxy
#   rbac-audit          (runs last) the chart's RBAC against the API server's audit log: every
#                       verb granted was used (or is allowlisted with a reason), no request was
#                       forbidden (kind-tests/rbac-audit; skipped when the cluster has no audit log)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kind-tests/lib.sh
source "$HERE/lib.sh"
KUBECONFIG="${KUBECONFIG:-$("$HERE/cluster.sh" kubeconfig)}"
export KUBECONFIG

ALL_CASES=(namespaced groups-ready wrong-s3-key volume-restore populator postgres-rename verification mariadb-table agent-killed operator-restart schedule-retention invalid-specs hooks mirror-outage csi-snapshot plugin tenants rbac-audit)
KEEP=0
CASES=()
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    --*) echo "usage: $0 [--keep] [CASE...] (cases: ${ALL_CASES[*]})" >&2; exit 2 ;;
    *) printf '%s\n' "${ALL_CASES[@]}" | grep -qx -- "$a" \
         || { echo "unknown case $a (cases: ${ALL_CASES[*]})" >&2; exit 2; }
       CASES+=("$a") ;;
  esac
done
((${#CASES[@]})) || CASES=("${ALL_CASES[@]}")
want() { printf '%s\n' "${CASES[@]}" | grep -qx "$1"; }

INFRA=hort-e2e-infra
S3_ACCESS=e2e-access
S3_SECRET=e2e-secret-key-0123456789
S3_BUCKET=hort-e2e
S3_ENDPOINT="http://s3.$INFRA.svc:9000"
DB_PASSWORD=e2e-db-password
PG_HOST="postgres.$INFRA.svc"
MARIA_HOST="mariadb.$INFRA.svc"
# The agent's location of an S3 group made by s3_group with PREFIX (what `verify` etc. open).
s3_location() { echo "s3://$S3_BUCKET/$1?endpoint=$S3_ENDPOINT&region=us-east-1&path-style=true"; }

T_ALL=$EPOCHREALTIME
# Requests older than this in the audit log are from earlier runs.
AUDIT_SINCE="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
# The namespaced case's release and the namespace its operator runs in (not hort-e2e-*: it must
# outlive the case namespaces at cleanup, to remove their finalizers).
NS_RELEASE=hort-ns
NS_RELEASE_NAMESPACE=hort-ns-system
RESULTS=()
FAILED=0

cleanup() {
  local rc=$?
  if ((KEEP)); then
    echo "kept: namespaces hort-e2e-*, release $HORT_RELEASE in $HORT_NAMESPACE" >&2
  else
    local t0=$EPOCHREALTIME ns
    for ns in $(kc get namespaces -o name 2>/dev/null | grep '^namespace/hort-e2e-' | cut -d/ -f2); do
      kc delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    done
    for ns in $(kc get namespaces -o name 2>/dev/null | grep '^namespace/hort-e2e-' | cut -d/ -f2); do
      kc wait --for=delete "namespace/$ns" --timeout=180s >/dev/null 2>&1 || true
    done
    uninstall_hort
    HORT_RELEASE=$NS_RELEASE HORT_NAMESPACE=$NS_RELEASE_NAMESPACE uninstall_hort
    kc delete namespace "$NS_RELEASE_NAMESPACE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    # the chart's namespace too, unless another release lives there (the CRDs stay)
    if [[ -z "$("$HELM" list --namespace "$HORT_NAMESPACE" -q 2>/dev/null)" ]]; then
      kc delete namespace "$HORT_NAMESPACE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    echo "cleanup took $(since "$t0")s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "    FAILED CHECK: $*" >&2; exit 1; }
not_ready() { [[ "$(condition "$1" "$2" Ready)" == False ]]; }
not_in() { ! grep -qF -- "$1" <<<"$2"; }
check() { # DESCRIPTION COMMAND...: the command must succeed
  local what="$1"; shift
  "$@" || fail "$what"
}

# run_case ID TITLE: runs function case_ID in a subshell (set -e), prints PASS/FAIL with the
# time it took; on failure dumps the case's namespace.
run_case() {
  local id="$1" title="$2" t0=$EPOCHREALTIME rc
  want "$id" || return 0
  echo "== $id: $title"
  set +e
  (set -euo pipefail; "case_$id")
  rc=$?
  set -e
  local took; took="$(since "$t0")"
  if ((rc == 0)); then
    echo "PASS $id ($took s): $title"
    RESULTS+=("PASS $id ${took}s  $title")
  else
    echo "FAIL $id ($took s): $title"
    RESULTS+=("FAIL $id ${took}s  $title")
    FAILED=$((FAILED + 1))
    if kc get namespace "hort-e2e-$id" >/dev/null 2>&1; then dump_namespace "hort-e2e-$id"; fi
  fi
}

# A case's namespace with the repository password and S3 credentials.
case_namespace() {
  new_namespace "$1"
  repository_secrets "$1" "$S3_ACCESS" "$S3_SECRET"
  usable_secret "$1" db-credentials --from-literal=username=postgres --from-literal=password="$DB_PASSWORD"
  usable_secret "$1" mariadb-credentials --from-literal=username=root --from-literal=password="$DB_PASSWORD"
}

# A claim "data" (marked usable by Hort) filled by a pod: SCRIPT runs in /data.
fill_claim() { # NS SIZE SCRIPT
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: $2}}
EOF
  run_pod "$1" writer hort.local/busybox:stable "set -e; cd /data; $3; sync" data /data >/dev/null
}

# The first BackupJob of Schedule NAME in NS (empty until there is one).
scheduled_job() { # NS NAME
  kc -n "$1" get backupjob -l "hort.dev/schedule=$2" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null
}
has_scheduled_job() { [[ -n "$(scheduled_job "$1" "$2")" ]]; }

volume_job() { # NS NAME GROUP [BACKOFF-LIMIT]
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: $2}
spec:
  storageGroupRef: {name: $3}
  source:
    volume: {claimName: data}
  tags: [e2e]
  backoffLimit: ${4:-0}
EOF
}

# Snapshots of a repository (the agent's SnapshotList report) through an agent pod.
snapshots_json() { # NS POD LOCATION
  agent_cmd "$1" "$2" "$3" snapshots --json | grep '^{"protocolVersion"'
}
count_tagged() { # JSON TAG: snapshots carrying TAG
  python3 -c 'import json,sys; print(sum(1 for s in json.loads(sys.argv[1])["snapshots"] if sys.argv[2] in s["tags"]))' "$1" "$2"
}

# ---------------------------------------------------------------------------------------------
echo "== setup"
t0=$EPOCHREALTIME
if [[ "${HORT_E2E_SKIP_IMPORT:-}" != 1 ]]; then
  "$HERE/images.sh" import hort-operator hort-agent test-s3 test-postgres test-mariadb 2>&1 | sed 's/^/  /'
fi
echo "  images imported ($(since "$t0")s)"
t1=$EPOCHREALTIME
new_namespace "$INFRA"
deploy_s3 "$INFRA" "$S3_ACCESS" "$S3_SECRET" "$S3_BUCKET"
deploy_postgres "$INFRA" "$DB_PASSWORD"
deploy_mariadb "$INFRA" "$DB_PASSWORD"
wait_servers "$INFRA" s3 postgres mariadb
echo "  S3, PostgreSQL and MariaDB running in $INFRA ($(since "$t1")s)"
echo "setup took $(since "$t0")s"

# ---------------------------------------------------------------------------------------------
case_groups-ready() {
  local ns=hort-e2e-groups-ready
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" a
  pvc_group $ns disk backup-disk
  wait_ready $ns storagegroup/s3 180
  note "s3: $(condition_message $ns storagegroup/s3 Ready); repository $(jp $ns storagegroup/s3 '{.status.repositoryId}')"
  check "the S3 group has a repositoryId" test -n "$(jp $ns storagegroup/s3 '{.status.repositoryId}')"
  wait_ready $ns storagegroup/disk 180
  note "disk: $(condition_message $ns storagegroup/disk Ready)"
  check "the PVC group has a repositoryId" test -n "$(jp $ns storagegroup/disk '{.status.repositoryId}')"
  # the check pods ran `check --init` with the agent image
  local args
  args="$(kc -n $ns get pods -l hort.dev/agent-role=check -o jsonpath='{range .items[*]}{.spec.containers[0].image} {.spec.containers[0].args}{"\n"}{end}')"
  note "check pods: $(echo "$args" | sort -u | tr '\n' ';')"
  check "check pods ran 'check --init' with $HORT_AGENT_IMAGE" grep -q "$HORT_AGENT_IMAGE.*check.*--init" <<<"$args"
}

case_wrong-s3-key() {
  local ns=hort-e2e-wrong-s3-key
  case_namespace $ns
  usable_secret $ns wrong-credentials --from-literal=AWS_ACCESS_KEY_ID="$S3_ACCESS" \
    --from-literal=AWS_SECRET_ACCESS_KEY=not-the-secret
  s3_group $ns wrong "$S3_ENDPOINT" "$S3_BUCKET" b wrong-credentials
  wait_until 180 "Ready=False on the group with wrong credentials" not_ready $ns storagegroup/wrong
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: waits}
spec:
  storageGroupRef: {name: wrong}
  source:
    postgres: {host: $PG_HOST, credentialsSecretRef: {name: db-credentials}}
EOF
  sleep 20
  local phase; phase="$(jp $ns backupjob/waits '{.status.phase}')"
  note "BackupJob after 20 s: phase=${phase:-none}: $(jp $ns backupjob/waits '{.status.message}')"
  check "the BackupJob waits (phase Pending)" test "$phase" == Pending
  check "no backup pod was created" test -z "$(kc -n $ns get pods -l hort.dev/agent-role=backup -o name)"
  local msg; msg="$(condition_message $ns storagegroup/wrong Ready)"
  note "Ready=False: $(cut -c1-300 <<<"$msg")"
  check "the message gives the S3 error (SignatureDoesNotMatch/403)" grep -Eq 'SignatureDoesNotMatch|403' <<<"$msg"
  check "the message names the target (\"s3\" or its bucket)" grep -Eq '"s3"|hort-e2e' <<<"$msg"
  check "the message is short (< 400 characters, not an SDK debug dump)" test "${#msg}" -lt 400
}

case_volume-restore() {
  local ns=hort-e2e-volume-restore
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" c
  fill_claim $ns 1Gi 'mkdir -p docs/deep media; echo "hello hort" > docs/hello.txt; seq 1 20000 > docs/deep/numbers.txt
    head -c 20000000 /dev/urandom > media/random.bin; ln -s ../docs/hello.txt media/link; chmod 0640 docs/hello.txt'
  local sums; sums="$(run_pod $ns sums hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' data /data)"
  wait_ready $ns storagegroup/s3 180
  volume_job $ns vol s3
  wait_phase $ns backupjob/vol Succeeded 300
  local id; id="$(jp $ns backupjob/vol '{.status.snapshotId}')"
  note "snapshot $id, stats $(jp $ns backupjob/vol '{.status.stats}')"
  check "snapshotId set" test -n "$id"
  check "stats.files >= 3" test "$(jp $ns backupjob/vol '{.status.stats.files}')" -ge 3
  check "stats.bytesRead >= 20 MB" test "$(jp $ns backupjob/vol '{.status.stats.bytesRead}')" -ge 20000000
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: vol}
spec:
  storageGroupRef: {name: s3}
  source:
    backupJobRef: {name: vol}
  target:
    volume:
      claimName: restored
      storageClassName: local-path
      size: 1Gi
EOF
  wait_phase $ns restorerequest/vol Succeeded 300
  note "restore: snapshot $(jp $ns restorerequest/vol '{.status.snapshotId}'), stats $(jp $ns restorerequest/vol '{.status.stats}')"
  local back
  back="$(run_pod $ns verify hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum; readlink media/link; stat -c %a docs/hello.txt' restored /data)"
  note "restored: $(echo "$back" | tr '\n' ' ' | cut -c1-200)"
  check "restored files have the same contents" test "$(echo "$back" | head -n "$(echo "$sums" | wc -l)")" == "$sums"
  check "symlink restored" grep -qx '../docs/hello.txt' <<<"$back"
  check "mode 0640 restored" test "$(echo "$back" | tail -n 1)" == 640

  # The repository password rotated by the group (docs/security.md): a new Secret, and in one
  # apply keySecretRef pointing at it and previousKeySecretRef at the old one.
  usable_secret $ns repository-password-2 --from-literal=password="e2e-$ns-rotated-password"
  kc -n $ns patch storagegroup s3 --type merge -p '{"spec":{"encryption":{
    "keySecretRef":{"name":"repository-password-2"},"previousKeySecretRef":{"name":"hort-repository-password"}}}}' >/dev/null
  wait_until 120 "the group's check rotated the password (KeyRotated True)" \
    test_condition $ns storagegroup/s3 KeyRotated True
  note "rotation: $(condition_message $ns storagegroup/s3 KeyRotated)"
  wait_ready $ns storagegroup/s3 60
  volume_job $ns after-rotation s3
  wait_phase $ns backupjob/after-rotation Succeeded 300
  check "a backup with the new password finds the old data (nothing new stored of the unchanged files)" \
    test "$(jp $ns backupjob/after-rotation '{.status.stats.bytesNew}')" -lt 1000000
  local old_key exit_code snapshots
  old_key="$(AGENT_PASSWORD_SECRET=hort-repository-password agent_cmd $ns old-key "$(s3_location c)" snapshots --json 2>&1)" || true
  exit_code="$(jp $ns pod/old-key '{.status.containerStatuses[0].state.terminated.exitCode}')"
  note "the old password: exit code $exit_code, $(echo "$old_key" | tail -n 1 | cut -c1-160)"
  check "the old password opens nothing any more (exit code 12)" test "$exit_code" == 12
  snapshots="$(AGENT_PASSWORD_SECRET=repository-password-2 agent_cmd $ns new-key "$(s3_location c)" snapshots --json)"
  check "the new password opens the snapshots from before and after the rotation" \
    grep -q "$id.*$(jp $ns backupjob/after-rotation '{.status.snapshotId}')" <<<"$snapshots"
}

case_populator() {
  local ns=hort-e2e-populator
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" populator
  fill_claim $ns 1Gi 'mkdir -p www logs; seq 1 50000 > www/numbers.txt; echo "<h1>shop</h1>" > www/index.html
    head -c 3000000 /dev/urandom > www/image.bin; echo "not wanted" > logs/old.log'
  local sums; sums="$(run_pod $ns sums hort.local/busybox:stable 'cd /data && find www -type f | sort | xargs md5sum' data /data)"
  wait_ready $ns storagegroup/s3 180
  volume_job $ns web s3
  wait_phase $ns backupjob/web Succeeded 300
  # The application recreated from manifests alone: a VolumeRestoreSource of the job's
  # snapshot (www/ only), a claim of the CSI test driver's class (WaitForFirstConsumer; its
  # external-provisioner leaves claims with a foreign dataSourceRef to their populator) that
  # names it as its dataSourceRef, and a pod that mounts the claim, all applied at once.
  local t0=$EPOCHREALTIME
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: VolumeRestoreSource
metadata: {name: web}
spec:
  storageGroupRef: {name: s3}
  source: {backupJobRef: {name: web}}
  paths: [www]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-restored}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: hort-csi
  resources: {requests: {storage: 1Gi}}
  dataSourceRef: {apiGroup: hort.dev, kind: VolumeRestoreSource, name: web}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-local}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-path
  resources: {requests: {storage: 1Gi}}
  dataSourceRef: {apiGroup: hort.dev, kind: VolumeRestoreSource, name: web}
EOF
  local back
  back="$(run_pod $ns app hort.local/busybox:stable 'cd /data && find www -type f | sort | xargs md5sum; ls /data' web-restored /data)"
  note "the application's pod read its populated claim $(since "$t0")s after the manifests were applied"
  check "the populated claim holds www/ as backed up" test "$(head -n "$(wc -l <<<"$sums")" <<<"$back")" == "$sums"
  check "and nothing outside the source's paths" not_in "logs" "$(tail -n +"$(($(wc -l <<<"$sums") + 1))" <<<"$back")"
  local events; events="$(kc -n $ns get events --field-selector involvedObject.name=web-restored -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}')"
  note "claim events: $(grep -E '^Populate' <<<"$events" | tr '\n' ' ' | cut -c1-300)"
  check "the claim's Populated event names the snapshot" grep -q "^Populated: .*$(jp $ns backupjob/web '{.status.snapshotId}' | cut -c1-12)" <<<"$events"
  check "the VolumeRestoreSource said Populated" grep -q "^Populated: claim \"web-restored\"" <<<"$(condition_message $ns volumerestoresource/web Populated)"
  # Rancher's local-path provisioner fills a claim with a foreign dataSourceRef itself, with
  # an empty volume: the populator says so instead of leaving it unnoticed.
  run_pod $ns local hort.local/busybox:stable 'ls -A /data' web-local /data >/dev/null
  wait_until 60 "a PopulateBypassed Event on the local-path claim" has_event $ns web-local PopulateBypassed
  note "local-path claim: $(kc -n $ns get events --field-selector involvedObject.name=web-local,reason=PopulateBypassed -o jsonpath='{.items[0].message}' | cut -c1-160)"
  check "the VolumeRestoreSource's Populated condition says it was bypassed" \
    grep -q "^PopulateBypassed: .*web-local" <<<"$(condition_message $ns volumerestoresource/web Populated)"
  wait_until 60 "no prime claim or restore pod left" no_populate_leftovers $ns
}

has_event() { # NS OBJECT-NAME REASON
  [[ -n "$(kc -n "$1" get events --field-selector "involvedObject.name=$2,reason=$3" -o name 2>/dev/null)" ]]
}

no_populate_leftovers() { # NS
  [[ -z "$(kc -n "$1" get pvc,pods -l hort.dev/populate-claim -o name 2>/dev/null)" ]]
}

case_postgres-rename() {
  local ns=hort-e2e-postgres-rename q='select count(*), sum(id), md5(string_agg(name, $$,$$ order by id)) from items'
  case_namespace $ns
  # Database, check and restore pods of an S3 group mount no claim: they pass "restricted".
  kc label ns $ns pod-security.kubernetes.io/enforce=restricted >/dev/null
  local d
  for d in e2e_app e2e_app_restored e2e_other; do psql_in $INFRA "drop database if exists $d" >/dev/null; done
  psql_in $INFRA 'create database e2e_app' >/dev/null
  psql_in $INFRA 'create database e2e_other' >/dev/null
  psql_in $INFRA "create table items (id int primary key, name text not null, at timestamptz default now());
    insert into items (id, name) select g, 'item-' || g from generate_series(1, 5000) g;
    create index on items (name); create view v_items as select id from items" e2e_app >/dev/null
  psql_in $INFRA 'create table other (x int); insert into other values (1)' e2e_other >/dev/null
  local before; before="$(psql_in $INFRA "$q" e2e_app)"
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" d1
  wait_ready $ns storagegroup/s3 180
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: pg}
spec:
  storageGroupRef: {name: s3}
  source:
    postgres:
      host: $PG_HOST
      databases: [e2e_app, e2e_other]
      credentialsSecretRef: {name: db-credentials}
  tags: [e2e, pg]
EOF
  wait_phase $ns backupjob/pg Succeeded 300
  check "the backup pod ran as non-root in a restricted namespace" \
    test "$(jp $ns pod/pg-1 '{.spec.containers[0].securityContext.runAsUser}')" == 65532
  note "snapshot $(jp $ns backupjob/pg '{.status.snapshotId}'), stats $(jp $ns backupjob/pg '{.status.stats}')"
  local plugin tables; plugin="$(plugin_bin)" || fail "no kubectl-hort binary: cargo build --release -p kubectl-hort, or set HORT_PLUGIN"
  tables="$("$plugin" -n $ns ls s3 latest --operator-namespace "$HORT_NAMESPACE")" || fail "kubectl hort ls failed"
  note "ls tables: $(grep -A9 '^DATABASE' <<<"$tables" | tr -s ' ' | tr '\n' ';')"
  check "kubectl hort ls shows each table with the rows it had at backup time" \
    grep -Eq '^e2e_app +public.items +5000$' <<<"$tables"
  check "... of every database" grep -Eq '^e2e_other +public.other +1$' <<<"$tables"
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: pg}
spec:
  storageGroupRef: {name: s3}
  source:
    backupJobRef: {name: pg}
  target:
    postgres:
      host: $PG_HOST
      credentialsSecretRef: {name: db-credentials}
      databases:
        - {from: e2e_app, to: e2e_app_restored}
EOF
  wait_phase $ns restorerequest/pg Succeeded 300
  note "restore stats $(jp $ns restorerequest/pg '{.status.stats}')"
  local after; after="$(psql_in $INFRA "$q" e2e_app_restored)"
  note "rows: original $before, restored $after"
  check "restored rows equal the original" test "$before" == "$after"
  check "the view came back" test "$(psql_in $INFRA 'select count(*) from v_items' e2e_app_restored)" == 5000
  check "only e2e_app was restored" test -z "$(psql_in $INFRA "select 1 from pg_database where datname like 'e2e_other_%'")"
  for d in e2e_app e2e_app_restored e2e_other; do psql_in $INFRA "drop database if exists $d" >/dev/null || true; done
}

case_mariadb-table() {
  local ns=hort-e2e-mariadb-table q='select count(*), sum(id), md5(group_concat(item order by id)) from orders'
  case_namespace $ns
  mariadb_in $INFRA "drop database if exists e2e_shop; create database e2e_shop" >/dev/null
  mariadb_in $INFRA "create table e2e_shop.orders (id int primary key, item varchar(64) not null, qty int);
    create table e2e_shop.customers (id int primary key, name varchar(64));
    insert into e2e_shop.orders select seq, concat('item-', seq), seq % 7 from seq_1_to_3000;
    insert into e2e_shop.customers select seq, concat('c-', seq) from seq_1_to_100;" e2e_shop >/dev/null
  local before; before="$(mariadb_in $INFRA "$q" e2e_shop)"
  # A PVC group's check, database backup, restore and verification pods pass "restricted".
  kc label ns $ns pod-security.kubernetes.io/enforce=restricted >/dev/null
  pvc_group $ns disk backup-disk
  wait_ready $ns storagegroup/disk 180
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: maria}
spec:
  storageGroupRef: {name: disk}
  source:
    mariadb:
      host: $MARIA_HOST
      databases: [e2e_shop]
      credentialsSecretRef: {name: mariadb-credentials}
  tags: [e2e, shop]
EOF
  wait_phase $ns backupjob/maria Succeeded 300
  note "snapshot $(jp $ns backupjob/maria '{.status.snapshotId}'), stats $(jp $ns backupjob/maria '{.status.stats}')"
  check "the backup pod of a PVC group ran as non-root in a restricted namespace" \
    test "$(jp $ns pod/maria-1 '{.spec.containers[0].securityContext.runAsUser}')" == 65532
  # The backup restored into a throwaway MariaDB server beside its agent, while the live table
  # is damaged and restored below: the row counts recorded at backup time and an assertion hold.
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: Verification
metadata: {name: maria}
spec:
  storageGroupRef: {name: disk}
  source:
    backupJobRef: {name: maria}
  database:
    kind: Mariadb
    image: hort.local/test-mariadb:dev
    assertions:
      - {name: every-order, database: e2e_shop, sql: "select count(*) = 3000 and sum(id) = 4501500 from orders"}
EOF
  # damage one table, change another: only the first comes back
  mariadb_in $INFRA "delete from orders where id > 1000; update orders set qty = 0; update customers set name = 'changed'" e2e_shop
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: orders}
spec:
  storageGroupRef: {name: disk}
  source:
    tags: [shop]
  target:
    mariadb:
      host: $MARIA_HOST
      credentialsSecretRef: {name: mariadb-credentials}
      databases: [{from: e2e_shop}]
      tables: [orders]
      clean: true
EOF
  wait_phase $ns restorerequest/orders Succeeded 300
  note "restore stats $(jp $ns restorerequest/orders '{.status.stats}')"
  local after; after="$(mariadb_in $INFRA "$q" e2e_shop)"
  note "orders: original $before, restored $after"
  check "restored table equals the original" test "$before" == "$after"
  check "the other table was not touched" \
    test "$(mariadb_in $INFRA "select count(*) from customers where name = 'changed'" e2e_shop)" == 100
  wait_phase $ns verification/maria Succeeded 300
  local checked; checked="$(jp $ns verification/maria '{.status.checked}')"
  note "verification: RTO $(jp $ns verification/maria '{.status.restoreDurationSeconds}')s, checked $checked"
  check "the MariaDB verification ran the assertion" grep -q every-order <<<"$checked"
  check "the MariaDB verification compared both tables' rows" \
    grep -q 'database e2e_shop: 2 tables, row counts match the backup' <<<"$checked"
  wait_until 60 "the pod of the MariaDB verification is gone" none_named $ns maria-verify pods
  mariadb_in $INFRA 'drop database e2e_shop' >/dev/null || true
}

# Waits until the BackupJob's agent pod is Running and has worked for SECS; prints its name.
running_agent_pod() { # NS JOB SECS
  local pod="" deadline=$((SECONDS + 180))
  while ((SECONDS < deadline)); do
    pod="$(kc -n "$1" get pods -l "hort.dev/agent-role=backup" --field-selector=status.phase=Running \
      -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)"
    [[ -n "$pod" ]] && break
    [[ "$(jp "$1" "backupjob/$2" '{.status.phase}')" == Succeeded ]] && { echo "the backup finished before it could be interrupted" >&2; return 1; }
    sleep 0.5
  done
  [[ -n "$pod" ]] || { echo "no running backup pod" >&2; return 1; }
  sleep "$3"
  [[ "$(jp "$1" "pod/$pod" '{.status.phase}')" == Running ]] || { echo "pod $pod is no longer running after $3 s (too little data?)" >&2; return 1; }
  echo "$pod"
}

# Whether OBJ's status shows progress with bytes done, the total and a percent.
has_progress() { # NS OBJ
  [[ "$(jp "$1" "$2" '{.status.progress.bytesDone}')" -gt 0 && -n "$(jp "$1" "$2" '{.status.progress.bytesTotal}')" \
     && -n "$(jp "$1" "$2" '{.status.progress.percent}')" ]] 2>/dev/null
}

uniq_words() { tr ' ' '\n' <<<"$1" | grep . | uniq | tr '\n' ' '; }

# The requests in namespace NS whose URI matches the regex PATTERN, from this run's audit log
# and its rotated files: time, user, verb, URI and response code, one line each.
audit_calls() { # NS PATTERN
  local log; log="$("$HERE/cluster.sh" audit-log)" || return 1
  python3 - "$log" "$1" "$2" "$AUDIT_SINCE" <<'PY'
import glob, json, re, sys
log, ns, pattern, since = sys.argv[1:]
lines = [l for f in sorted(glob.glob(log[:-4] + "-*.log")) + [log] for l in open(f)]
for line in lines:
    e = json.loads(line)
    uri = e.get("requestURI", "")
    if e.get("stage") != "ResponseComplete" or e["requestReceivedTimestamp"] < since:
        continue
    if f"/namespaces/{ns}/" in uri and re.search(pattern, uri):
        print(e["requestReceivedTimestamp"][11:23], e["user"]["username"], e["verb"], uri.split("?")[0],
              e.get("responseStatus", {}).get("code"))
PY
}

retry_pod_exists() { # NS FIRST-POD: a backup pod other than FIRST-POD exists
  kc -n "$1" get pods -l hort.dev/agent-role=backup -o name | grep -v "^pod/$2\$" | grep -q .
}

# An application pod "app" (label app=hooked) that allows hooks, with claim "data" (marked
# usable by Hort) mounted at /data and holding /data/file; waits until it runs.
hooked_app() { # NS
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, labels: {app: hooked}, annotations: {hort.dev/allow-hooks: "true"}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: hort.local/busybox:stable
      imagePullPolicy: IfNotPresent
      command: [sh, -c, "echo data > /data/file; sleep 3600"]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
  kc -n "$1" wait --for=condition=Ready pod/app --timeout=120s >/dev/null
}

case_hooks() {
  local ns=hort-e2e-hooks
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" i
  # An application pod with the volume that is backed up; the hooks run in it.
  hooked_app $ns
  wait_ready $ns storagegroup/s3 180
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: hooked}
spec:
  storageGroupRef: {name: s3}
  source:
    volume: {claimName: data, snapshot: None}
  hooks:
    pre:
      - {name: freeze, selector: {app: hooked}, command: [sh, -c, "echo frozen > /data/pre-hook"]}
    post:
      - {name: thaw, pod: app, container: app, command: [sh, -c, "echo thawed > /tmp/post-hook"]}
  backoffLimit: 0
EOF
  # Read live (snapshot: None): the agent pod is created before the pre hooks, held back by a
  # scheduling gate, and let go once they passed.
  wait_phase $ns backupjob/hooked Succeeded 300
  check "the agent pod was let go to run" \
    test "$(jp $ns pod/hooked-1 '{.status.phase}/{.spec.schedulingGates}')" == Succeeded/
  check "the pre hook ran before the data was read (its file is in the snapshot)" \
    test "$(jp $ns backupjob/hooked '{.status.stats.files}')" == 2
  check "the post hook ran" test "$(kc -n $ns exec app -- cat /tmp/post-hook)" == thawed
  # A pre hook that fails: no data is read, the post hooks still run, the message says why.
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: refused}
spec:
  storageGroupRef: {name: s3}
  source:
    volume: {claimName: data, snapshot: None}
  hooks:
    pre:
      - {name: refuse, pod: app, command: [sh, -c, "echo cannot freeze >&2; exit 3"]}
    post:
      - {name: thaw, pod: app, command: [sh, -c, "echo thawed-after-failure > /tmp/post-hook"]}
EOF
  wait_phase $ns backupjob/refused Failed 120
  local message; message="$(jp $ns backupjob/refused '{.status.message}')"
  note "message: $message"
  check "the job failed because of its hook" \
    test "$(jp $ns backupjob/refused '{.status.conditions[?(@.type=="Failed")].reason}')" == HookFailed
  check "the message names the hook and its error" grep -q 'pre hook "refuse".*cannot freeze' <<<"$message"
  check "no agent pod ran (the held one was deleted)" test -z "$(kc -n $ns get pod refused-1 --ignore-not-found -o name)"
  check "the post hook ran after the failure" \
    test "$(kc -n $ns exec app -- cat /tmp/post-hook)" == thawed-after-failure
}

# The records a writer appends to /data/a.log, /data/b.log and /data2/c.log in turn, as fast as
# it can: 23 bytes each, "R" + sequence number + a checksum of it. While /data/.pause exists it
# writes nothing and says so with /data/.paused (the hooks of the csi-snapshot case hold it so).
WRITER='i=0; while :; do
  if [ -e /data/.pause ]; then touch /data/.paused; sleep 0.02; continue; fi
  i=$((i + 1)); c=$(( (i * 2654435761) % 4294967296 ))
  printf "R%010d %010d\n" $i $c >> /data/a.log; printf "R%010d %010d\n" $i $c >> /data/b.log
  printf "R%010d %010d\n" $i $c >> /data2/c.log
done'
# With FILES (paths under /data, in the order the writer writes them): prints "ok N…" when each
# holds whole, valid, consecutive records from 1 and the counts fall by at most one from the
# first to the last file (what the writer wrote up to one point in time), else what is wrong.
CHECK_RECORDS='cd /data; for f in $FILES; do
  [ -z "$(tail -c 1 $f)" ] || { echo "$f ends in a torn record"; exit 0; }
  awk -v f=$f "{ s = substr(\$1, 2); c = \$2; sub(/^0+/, \"\", s); sub(/^0+/, \"\", c) }
    length(\$0) != 22 || s + 0 != NR || c + 0 != (NR * 2654435761) % 4294967296 { print f, \"record\", NR, \"is not valid:\", \$0; bad = 1; exit }
    END { if (!bad) print f, NR }" $f
done | awk "NF != 2 { print; bad = 1; exit } { f[NR] = \$1; n[NR] = \$2 }
  END { if (bad) exit; ok = n[1] > 0 && n[1] - n[NR] <= 1; for (i = 2; i <= NR; i++) if (n[i] > n[i - 1]) ok = 0
        printf ok ? \"ok\" : \"not one point in time:\"; for (i = 1; i <= NR; i++) printf \" %s=%s\", f[i], n[i]; print \"\" }"'

# A BackupJob of SOURCE (the volume source's fields), with hooks that hold the writer (PAUSE=1).
snapshot_job() { # NS NAME SOURCE PAUSE
  local hooks=""
  (($4)) && hooks="  hooks:
    pre:
      - {name: hold, pod: app, command: [sh, -c, 'rm -f /data/.paused; touch /data/.pause; n=0; until [ -e /data/.paused ]; do sleep 0.02; n=\$((n + 1)); [ \$n -lt 500 ] || exit 1; done; sync']}
    post:
      - {name: release, pod: app, command: [sh, -c, 'rm -f /data/.pause']}"
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: $2}
spec:
  storageGroupRef: {name: s3}
  source:
    volume: {$3}
  backoffLimit: 0
$hooks
EOF
}

# Restores BackupJob JOB's snapshot into a new claim JOB-restored and prints what CHECK_RECORDS
# finds there for FILES.
restored_records() { # NS JOB FILES
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: $2}
spec:
  storageGroupRef: {name: s3}
  source: {backupJobRef: {name: $2}}
  target:
    volume: {claimName: $2-restored, storageClassName: local-path, size: 1Gi}
EOF
  wait_phase "$1" "restorerequest/$2" Succeeded 300 >&2
  run_pod "$1" "check-$2" hort.local/busybox:stable "FILES='$3'; $CHECK_RECORDS" "$2-restored" /data
}

case_csi-snapshot() {
  local ns=hort-e2e-csi-snapshot claim
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" csi
  for claim in data data2; do
    kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim, labels: {hort.dev/usable: "true", app: records}}
spec:
  storageClassName: hort-csi
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
  done
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: app, annotations: {hort.dev/allow-hooks: "true"}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: hort.local/busybox:stable
      imagePullPolicy: IfNotPresent
      command: [sh, -c, $(printf 'head -c 30000000 /dev/urandom > /data/bulk.bin; %s' "$WRITER" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
      volumeMounts: [{name: data, mountPath: /data}, {name: data2, mountPath: /data2}]
  volumes:
    - {name: data, persistentVolumeClaim: {claimName: data}}
    - {name: data2, persistentVolumeClaim: {claimName: data2}}
EOF
  kc -n $ns wait --for=condition=Ready pod/app --timeout=120s >/dev/null
  wait_ready $ns storagegroup/s3 180
  sleep 2
  # CSI: the hooks hold the writer only until the snapshot is ready; the restored files are
  # one point in time.
  snapshot_job $ns csi "claimName: data, snapshot: CSI, volumeSnapshotClassName: hort-csi" 1
  wait_phase $ns backupjob/csi Succeeded 300
  local pause cut
  pause="$(jp $ns backupjob/csi '{.status.volumeSnapshot.hooksPauseSeconds}')"
  cut="$(jp $ns backupjob/csi '{.status.volumeSnapshot.creationTime}')"
  note "CSI: snapshot cut at $cut, the writer was held ${pause}s; backup took $(jp $ns backupjob/csi '{.status.stats.durationSeconds}')s"
  note "CSI: $(condition_message $ns backupjob/csi VolumeSnapshot)"
  check "the job read a snapshot" test "$(condition $ns backupjob/csi VolumeSnapshot)" == True
  check "the pause is recorded" test -n "$pause"
  wait_until 120 "the snapshot, its temporary claim and the agent pod deleted" none_named $ns csi-1 volumesnapshot,pvc,pod
  local records; records="$(restored_records $ns csi 'a.log b.log')"
  note "CSI restore: $records"
  check "the restored files are whole, valid records of one point in time" grep -q '^ok ' <<<"$records"
  # Both claims at one point in time: one VolumeGroupSnapshot between the same hooks.
  snapshot_job $ns group "claimSelector: {app: records}, snapshot: CSI, volumeGroupSnapshotClassName: hort-csi" 1
  wait_phase $ns backupjob/group Succeeded 300
  note "group: $(condition_message $ns backupjob/group VolumeSnapshot); held $(jp $ns backupjob/group '{.status.volumeSnapshot.hooksPauseSeconds}')s"
  check "one VolumeGroupSnapshot was used" \
    grep -q 'SnapshotTaken: VolumeGroupSnapshot' <<<"$(condition_message $ns backupjob/group VolumeSnapshot)"
  records="$(restored_records $ns group 'data/a.log data/b.log data2/c.log')"
  note "group restore: $records"
  check "the files of both claims are one point in time" grep -q '^ok ' <<<"$records"
  # None, no hooks: the live volume is read while the writer writes; the check may fail, and
  # the job says it read live.
  snapshot_job $ns live "claimName: data, snapshot: None" 0
  wait_phase $ns backupjob/live Succeeded 300
  note "None: $(condition_message $ns backupjob/live VolumeSnapshot)"
  check "the job says it read the volume live" test "$(condition $ns backupjob/live VolumeSnapshot)" == False
  note "live restore (may be torn): $(restored_records $ns live 'a.log b.log')"
  wait_until 120 "no VolumeSnapshot, VolumeGroupSnapshot or their contents left" no_snapshots_left $ns
}

# Whether NS holds no VolumeSnapshot or VolumeGroupSnapshot, and no content refers to one of NS.
no_snapshots_left() { # NS
  [[ -z "$(kc -n "$1" get volumesnapshots,volumegroupsnapshots -o name)" ]] \
    && [[ -z "$(kc get volumesnapshotcontents -o jsonpath="{.items[?(@.spec.volumeSnapshotRef.namespace==\"$1\")].metadata.name}")" ]] \
    && [[ -z "$(kc get volumegroupsnapshotcontents -o jsonpath="{.items[?(@.spec.volumeGroupSnapshotRef.namespace==\"$1\")].metadata.name}")" ]]
}

# Whether StorageGroup GROUP's TARGET shows REACHABLE/MISSING-FILES (e.g. true/0, false/).
target_is() { # NS GROUP TARGET STATE
  local at="{.status.targets[?(@.name==\"$3\")]"
  [[ "$(jp "$1" "storagegroup/$2" "$at.reachable}/$at.missingFiles}")" == "$4" ]]
}

# Whether no object of KINDS (comma-separated) named NAME exists in NS.
none_named() { # NS NAME KINDS
  [[ -z "$(kc -n "$1" get "$3" "$2" --ignore-not-found -o name)" ]]
}

case_mirror-outage() {
  local ns=hort-e2e-mirror-outage
  case_namespace $ns
  # An S3 server of this case's own: taking it down touches no other case.
  deploy_s3 $ns "$S3_ACCESS" "$S3_SECRET" mirror
  wait_servers $ns s3
  fill_claim $ns 1Gi 'mkdir -p docs; seq 1 50000 > docs/numbers.txt; head -c 5000000 /dev/urandom > blob.bin'
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: backup-disk, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: hort.dev/v1alpha1
kind: StorageGroup
metadata: {name: mirror}
spec:
  strategy: Mirror
  targets:
    - name: s3
      s3: {endpoint: "http://s3.$ns.svc:9000", bucket: mirror, prefix: m, forcePathStyle: true,
           credentialsSecretRef: {name: s3-credentials}}
    - name: disk
      pvc: {claimName: backup-disk, subPath: hort}
  encryption:
    keySecretRef: {name: hort-repository-password}
  checkIntervalSeconds: 30
EOF
  wait_ready $ns storagegroup/mirror 180
  volume_job $ns before mirror
  wait_phase $ns backupjob/before Succeeded 300
  # The S3 target goes down; new data is backed up to the disk alone.
  kc -n $ns scale deployment/s3 --replicas=0 >/dev/null
  kc -n $ns wait --for=delete pod -l app=s3 --timeout=60s >/dev/null
  run_pod $ns more hort.local/busybox:stable 'head -c 3000000 /dev/urandom > /data/more.bin; sync' data /data >/dev/null
  local sums; sums="$(run_pod $ns sums hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' data /data)"
  # A Schedule's run (every minute; suspended once it made one) backs up during the outage.
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: Schedule
metadata: {name: during}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      storageGroupRef: {name: mirror}
      source: {volume: {claimName: data}}
      tags: [e2e]
EOF
  wait_until 90 "the Schedule's first run" has_scheduled_job $ns during
  kc -n $ns patch schedule during --type merge -p '{"spec":{"suspend":true}}' >/dev/null
  local during; during="$(scheduled_job $ns during)"
  wait_phase $ns backupjob/$during Succeeded 300
  local message; message="$(jp $ns backupjob/$during '{.status.message}')"
  note "during the outage, the Schedule's run $during: $message"
  check "the Schedule's run says which target is behind" grep -q 'targets behind.*s3' <<<"$message"
  # (a check retries an unreachable target for about a minute before it says so)
  wait_until 240 "the group's check finds the S3 target unreachable" \
    target_is $ns mirror s3 false/
  note "group: $(condition_message $ns storagegroup/mirror Ready)"
  check "the group stays Ready (Degraded) with one target down" is_ready $ns storagegroup/mirror
  # It comes back, empty (the test server keeps its data in its pod), as a target added later
  # would: the group's check copies everything it lacks.
  kc -n $ns scale deployment/s3 --replicas=1 >/dev/null
  wait_servers $ns s3
  wait_until 180 "the S3 target reachable and level again (missingFiles 0)" target_is $ns mirror s3 true/0
  note "after resync: $(jp $ns storagegroup/mirror '{.status.targets}')"
  # The disk target's data is lost: the S3 target alone restores the backup made without it.
  run_pod $ns wipe hort.local/busybox:stable 'rm -rf /disk/hort; ls -la /disk' backup-disk /disk >/dev/null
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: during}
spec:
  storageGroupRef: {name: mirror}
  source: {backupJobRef: {name: $during}}
  target:
    volume: {claimName: restored, storageClassName: local-path, size: 1Gi}
EOF
  wait_phase $ns restorerequest/during Succeeded 300
  local back; back="$(run_pod $ns back hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' restored /data)"
  check "the restore from the resynced S3 target matches the data backed up during the outage" test "$back" == "$sums"
}

case_agent-killed() {
  local ns=hort-e2e-agent-killed
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" e
  fill_claim $ns 3Gi 'for i in 1 2 3 4 5 6; do head -c 200000000 /dev/urandom > big-$i.bin; done'
  wait_ready $ns storagegroup/s3 180
  volume_job $ns big s3 2
  local pod; pod="$(running_agent_pod $ns big 3)"
  wait_until 30 "the running backup's progress in status (bytes done, total, percent)" \
    has_progress $ns backupjob/big
  note "deleting agent pod $pod while it runs (progress: $(jp $ns backupjob/big '{.status.progress}'))"
  # the agent is PID 1 and ignores SIGTERM, so with the default grace period it would finish
  kc -n $ns delete pod "$pod" --grace-period=1 --wait=false >/dev/null
  wait_until 120 "a second attempt (agent pod other than $pod) after the first one's pod was deleted" \
    retry_pod_exists $ns "$pod"
  wait_phase $ns backupjob/big Succeeded 600
  local attempts; attempts="$(jp $ns backupjob/big '{.status.attempts}')"
  note "Succeeded after $attempts attempts: $(jp $ns backupjob/big '{.status.stats}')"
  check "a second attempt ran" test "$attempts" -ge 2
  local out; out="$(agent_cmd $ns verify "$(s3_location e)" verify --json)" || { echo "$out" >&2; fail "hort-agent verify"; }
  note "verify: $(echo "$out" | tail -n 1 | cut -c1-200)"
  check "verify reports ok" grep -q '"ok":true' <<<"$out"
  # The restore of the 1.2 GB shows its progress while it runs. The group's download limit
  # holds it to 50 MiB/s, so it runs for more than 20 s (without it, 8 s on an idle machine,
  # too short to be sure to see a progress read), and the limit is measured in a real cluster.
  kc -n $ns patch storagegroup s3 --type merge -p '{"spec":{"bandwidth":{"downloadPerSecond":"50Mi"}}}' >/dev/null
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: big}
spec:
  storageGroupRef: {name: s3}
  source: {backupJobRef: {name: big}}
  target:
    volume: {claimName: big-restored, storageClassName: local-path, size: 3Gi}
EOF
  local seen="" deadline=$((SECONDS + 300)) polls=0 pod_phases=""
  while [[ "$(jp $ns restorerequest/big '{.status.phase}')" != Succeeded ]] && ((SECONDS < deadline)); do
    has_progress $ns restorerequest/big && seen="$(jp $ns restorerequest/big '{.status.progress}')"
    polls=$((polls + 1)) pod_phases+="$(jp $ns pod/big-restore '{.status.phase}' 2>/dev/null || true) "
    sleep 0.5
  done
  wait_phase $ns restorerequest/big Succeeded 10
  local took; took="$(jp $ns restorerequest/big '{.status.stats.durationSeconds}')"
  note "restore of 1.2 GB at downloadPerSecond 50Mi took $took s (22.9 s at the limit)"
  note "restore progress seen while running: ${seen:-none} ($polls polls; the pod's phase at each: $(uniq_words "$pod_phases"))"
  if [[ -z "$seen" ]]; then
    note "the operator's log reads and status writes of this restore (audit log):"
    audit_calls "$ns" 'big-restore/log|restorerequests/big/status' >&2 || true
  fi
  check "the running restore showed its progress (bytes done, total, percent)" test -n "$seen"
  check "the restore was held to the group's download limit (at least 21 s)" \
    python3 -c "import sys; sys.exit(0 if float('$took') >= 21 else 1)"
}

case_operator-restart() {
  local ns=hort-e2e-operator-restart
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" f
  fill_claim $ns 3Gi 'for i in 1 2 3 4 5; do head -c 200000000 /dev/urandom > big-$i.bin; done'
  wait_ready $ns storagegroup/s3 180
  volume_job $ns once s3 2
  local pod op; pod="$(running_agent_pod $ns once 2)"
  op="$(operator_pod)"
  note "deleting operator pod $op while agent pod $pod runs"
  kc -n "$HORT_NAMESPACE" delete pod "$op" --wait=false >/dev/null
  kc -n "$HORT_NAMESPACE" rollout status "deployment/$(operator_name)" --timeout=180s >/dev/null
  wait_phase $ns backupjob/once Succeeded 600
  local attempts id; attempts="$(jp $ns backupjob/once '{.status.attempts}')"; id="$(jp $ns backupjob/once '{.status.snapshotId}')"
  note "Succeeded, attempts $attempts, snapshot $id, agent pod $(jp $ns backupjob/once '{.status.agentPod}')"
  check "one attempt (the running pod was adopted, not restarted)" test "$attempts" == 1
  local list; list="$(snapshots_json $ns list "$(s3_location f)")"
  check "exactly one snapshot tagged hort.dev/backup-job=once" test "$(count_tagged "$list" hort.dev/backup-job=once)" == 1
  check "the BackupJob's snapshot is that one" grep -q "$id" <<<"$list"
}

# schedule-retention is started first (it needs two minutes of wall time) and checked last.
G_STARTED=""
start_schedule_retention() {
  local ns=hort-e2e-schedule-retention
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" g
  fill_claim $ns 64Mi 'date > stamp; seq 1 1000 > numbers'
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: Schedule
metadata: {name: every-minute}
spec:
  schedule: "*/1 * * * *"
  retention: {keepLast: 1}
  historyLimit: {successful: 5, failed: 5}
  verification:
    schedule: "*/1 * * * *"
    volume: {storageClassName: local-path, size: 64Mi}
    historyLimit: {successful: 1, failed: 1}
  jobTemplate:
    spec:
      storageGroupRef: {name: s3}
      source:
        volume: {claimName: data}
      tags: [e2e-schedule]
EOF
}

case_schedule-retention() {
  local ns=hort-e2e-schedule-retention
  [[ -n "$G_STARTED" ]] || fail "the schedule was not set up"
  note "schedule running for $(since "$G_STARTED")s"
  # two successful runs, then a prune that removed at least one snapshot
  local deadline=$((SECONDS + 300)) jobs removed
  while :; do
    jobs="$(kc -n $ns get backupjobs -l hort.dev/schedule=every-minute -o jsonpath='{range .items[?(@.status.phase=="Succeeded")]}{.metadata.name} {.status.snapshotId}{"\n"}{end}')"
    removed="$(jp $ns schedule/every-minute '{.status.lastPrune.snapshotsRemoved}')"
    (($(grep -c . <<<"$jobs") >= 2)) && [[ -n "$removed" && "$removed" -ge 1 ]] && break
    ((SECONDS < deadline)) || fail "no two successful runs and a prune within 300 s (runs: $(echo "$jobs" | tr '\n' ' '); lastPrune: $(jp $ns schedule/every-minute '{.status.lastPrune}'))"
    sleep 2
  done
  note "runs: $(echo "$jobs" | tr '\n' ' '); lastPrune: $(jp $ns schedule/every-minute '{.status.lastPrune}')"
  check "lastPrune succeeded" test "$(jp $ns schedule/every-minute '{.status.lastPrune.succeeded}')" == true
  local list first; list="$(snapshots_json $ns list "$(s3_location g)")"
  first="$(head -n 1 <<<"$jobs" | cut -d' ' -f2)"
  note "snapshots of the schedule: $(count_tagged "$list" hort.dev/schedule=every-minute)"
  # runs may continue meanwhile: every prune keeps exactly one, a running backup may add one
  check "at most 2 snapshots of the schedule remain" test "$(count_tagged "$list" hort.dev/schedule=every-minute)" -le 2
  check "the first run's snapshot $first is gone" not_in "$first" "$list"
  # The schedule's verifications restore its newest snapshot into a temporary claim and check
  # every file; only the newest succeeded one is kept.
  wait_until 240 "two verifications of the schedule succeeded, the older one deleted" verified_twice $ns every-minute
  note "last verification: $(jp $ns schedule/every-minute '{.status.lastVerification}')"
  check "the measured restore time is recorded" \
    test -n "$(jp $ns schedule/every-minute '{.status.lastVerification.restoreDurationSeconds}')"
  # A lower history limit deletes the older finished jobs (suspended: no new run meanwhile).
  kc -n $ns patch schedule every-minute --type merge -p '{"spec":{"suspend":true,"historyLimit":{"successful":1}}}' >/dev/null
  wait_until 60 "one succeeded BackupJob left after historyLimit.successful=1" one_succeeded_job $ns every-minute
}

# Whether SCHEDULE's last verification succeeded, it is not the first one (its name's time is
# later than the schedule's first run), and only one succeeded Verification of it is left.
verified_twice() { # NS SCHEDULE
  local last first
  [[ "$(jp "$1" "schedule/$2" '{.status.lastVerification.result}')" == Succeeded ]] || return 1
  last="$(jp "$1" "schedule/$2" '{.status.lastVerification.name}')"
  [[ -z "$VERIFIED_FIRST" ]] && VERIFIED_FIRST="$last"
  [[ "$last" != "$VERIFIED_FIRST" ]] || return 1
  first="$(kc -n "$1" get verifications -l "hort.dev/schedule=$2" -o jsonpath='{range .items[?(@.status.phase=="Succeeded")]}{.metadata.name}{"\n"}{end}')"
  [[ "$first" == "$last" ]]
}
VERIFIED_FIRST=""

one_succeeded_job() { # NS SCHEDULE
  test "$(kc -n "$1" get backupjobs -l "hort.dev/schedule=$2" -o jsonpath='{range .items[?(@.status.phase=="Succeeded")]}{.metadata.name}{"\n"}{end}' | grep -c .)" == 1
}

case_verification() {
  local ns=hort-e2e-verification d=e2e_ledger
  case_namespace $ns
  # The throwaway servers run in the agent pods of a restricted namespace.
  kc label ns $ns pod-security.kubernetes.io/enforce=restricted >/dev/null
  psql_in $INFRA "drop database if exists $d" >/dev/null
  psql_in $INFRA "create database $d" >/dev/null
  psql_in $INFRA "create table ledger (id int primary key, amount int not null);
    insert into ledger select g, case when g % 2 = 0 then 7 else -7 end from generate_series(1, 2000) g" $d >/dev/null
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" v
  wait_ready $ns storagegroup/s3 180
  kc -n $ns apply -f - >/dev/null <<EOT
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: pg}
spec:
  storageGroupRef: {name: s3}
  source:
    postgres:
      host: $PG_HOST
      databases: [$d]
      credentialsSecretRef: {name: db-credentials}
EOT
  wait_phase $ns backupjob/pg Succeeded 300
  # One verification whose assertion holds, one whose assertion the data breaks.
  local name sql
  for name in balanced broken; do
    sql='select sum(amount) = 0 from ledger'
    [[ $name == broken ]] && sql='select count(*) = 1999 from ledger'
    kc -n $ns apply -f - >/dev/null <<EOT
apiVersion: hort.dev/v1alpha1
kind: Verification
metadata: {name: $name}
spec:
  storageGroupRef: {name: s3}
  source:
    backupJobRef: {name: pg}
  database:
    kind: Postgres
    image: hort.local/test-postgres:dev
    assertions:
      - {name: $name, database: $d, sql: "$sql"}
EOT
  done
  wait_phase $ns verification/balanced Succeeded 300
  note "balanced: RTO $(jp $ns verification/balanced '{.status.restoreDurationSeconds}')s, checked $(jp $ns verification/balanced '{.status.checked}')"
  check "the measured restore time is recorded" test -n "$(jp $ns verification/balanced '{.status.restoreDurationSeconds}')"
  check "the assertion is listed as checked" grep -q balanced <<<"$(jp $ns verification/balanced '{.status.checked}')"
  wait_phase $ns verification/broken Failed 300
  note "broken: $(jp $ns verification/broken '{.status.message}')"
  check "the failure names the assertion" test "$(jp $ns verification/broken '{.status.failures[0].subject}')" == "assertion broken"
  # Scratch is removed: no pod, no password Secret of either run.
  wait_until 60 "the pod of the passed run is gone" none_named $ns balanced-verify pods
  wait_until 60 "the pod of the failed run is gone" none_named $ns broken-verify pods
  # The repository itself: every pack read and found intact; then one pack damaged on the S3
  # server (the largest file under the group's prefix) and named by the next run.
  repository_verification $ns repo-clean
  wait_phase $ns verification/repo-clean Succeeded 300
  note "repo-clean: $(jp $ns verification/repo-clean '{.status.message}')"
  check "every pack was read" test "$(jp $ns verification/repo-clean '{.status.repository.packsRead}')" \
    == "$(jp $ns verification/repo-clean '{.status.repository.packsStored}')"
  local pack
  pack="$(kc -n $INFRA exec deploy/s3 -- sh -c "ls -S \$(find /data/$S3_BUCKET/v/data -type f) | head -n 1")"
  check "a pack of the group was found on the S3 server" test -n "$pack"
  kc -n $INFRA exec deploy/s3 -- sh -c "printf damaged | dd of='$pack' bs=1 seek=100 conv=notrunc 2>/dev/null"
  repository_verification $ns repo-damaged
  wait_phase $ns verification/repo-damaged Failed 300
  note "repo-damaged: $(jp $ns verification/repo-damaged '{.status.message}')"
  check "the failure names the damaged pack" \
    grep -qF "pack $(basename "$pack")" <<<"$(jp $ns verification/repo-damaged '{.status.failures[*].subject}')"
  wait_until 60 "the pod of the repository check is gone" none_named $ns repo-damaged-verify pods
  psql_in $INFRA "drop database if exists $d" >/dev/null || true
  verify_files_with_commands
}

# A volume verification runs the user's command over the restored files once their content
# matched the snapshot (the agent restores as root: a namespace of its own, not restricted).
verify_files_with_commands() {
  local ns=hort-e2e-verify-files name script
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" vf
  fill_claim $ns 64Mi 'echo ok > app.db; mkdir -p logs; seq 1 100 > logs/numbers'
  wait_ready $ns storagegroup/s3 180
  volume_job $ns files s3
  wait_phase $ns backupjob/files Succeeded 300
  # One command that passes (the file is there, the mount is read-only, it runs as non-root)
  # and one that fails (a file the backup never had).
  for name in files-ok files-missing; do
    script='test "$(cat /restore/app.db)" = ok && ! touch /restore/written 2>/dev/null && test "$(id -u)" != 0'
    [[ $name == files-missing ]] && script='echo looking for /restore/missing; test -f /restore/missing'
    kc -n $ns apply -f - >/dev/null <<EOT
apiVersion: hort.dev/v1alpha1
kind: Verification
metadata: {name: $name}
spec:
  storageGroupRef: {name: s3}
  source:
    backupJobRef: {name: files}
  volume:
    storageClassName: local-path
    size: 64Mi
    command:
      image: hort.local/busybox:stable
      command: [sh, -c, '$script']
      timeoutSeconds: 120
EOT
  done
  wait_phase $ns verification/files-ok Succeeded 300
  note "files-ok: checked $(jp $ns verification/files-ok '{.status.checked}')"
  check "the command is listed as checked" \
    grep -q 'command hort.local/busybox:stable: exit 0' <<<"$(jp $ns verification/files-ok '{.status.checked}')"
  wait_phase $ns verification/files-missing Failed 300
  note "files-missing: $(jp $ns verification/files-missing '{.status.message}')"
  check "the failure names the command" \
    test "$(jp $ns verification/files-missing '{.status.failures[0].subject}')" == "command hort.local/busybox:stable"
  check "the failure holds the exit code and the output" \
    grep -q 'exit code 1; output ends: looking for /restore/missing' <<<"$(jp $ns verification/files-missing '{.status.failures[0].detail}')"
  wait_until 60 "the pod of the passed run is gone" none_named $ns files-ok-verify pods
  wait_until 60 "the pod of the failed run is gone" none_named $ns files-missing-verify pods
}

# repository_verification NS NAME: a Verification of group s3's repository, every pack read.
repository_verification() {
  kc -n "$1" apply -f - >/dev/null <<EOT
{apiVersion: hort.dev/v1alpha1, kind: Verification, metadata: {name: $2},
 spec: {storageGroupRef: {name: s3}, repository: {readDataPercent: 100}}}
EOT
}

case_invalid-specs() {
  local ns=hort-e2e-invalid-specs f expects out n=0
  case_namespace $ns
  for f in "$HORT_REPO_DIR"/crds/tests/invalid/*.yaml; do
    expects="$(sed -n 's/^# expect: //p' "$f")"
    if out="$(kc -n $ns apply -f "$f" 2>&1)"; then
      fail "$(basename "$f") was accepted: $out"
    fi
    while IFS= read -r e; do
      [[ -z "$e" ]] && continue
      grep -qF -- "$e" <<<"$out" || fail "$(basename "$f"): the error does not say '$e': $out"
    done <<<"$expects"
    n=$((n + 1))
  done
  note "$n invalid specs rejected, e.g.: $(kc -n $ns apply -f "$HORT_REPO_DIR/crds/tests/invalid/07-schedule-keeplast-zero.yaml" 2>&1 | cut -c1-200)"
  check "at least 20 invalid specs tried" test "$n" -ge 20
}

# ---- RBAC against the audit log (kind-tests/rbac-audit)

# rbac_tool ARGS...: runs hort-rbac-audit (built by cargo if needed).
rbac_tool() {
  cargo run --quiet --release --locked --manifest-path "$HORT_REPO_DIR/Cargo.toml" -p hort-rbac-audit -- "$@"
}

# rbac_check [ARGS...]: the installed manifest of release $HORT_RELEASE against the requests its
# operator made since this run started, in the audit log and its rotated files.
rbac_check() {
  local log manifest f
  log="$("$HERE/cluster.sh" audit-log)"
  local logs=(--audit-log "$log")
  for f in "${log%.log}"-*.log; do [[ -f "$f" ]] && logs+=(--audit-log "$f"); done
  manifest="$("$HELM" get manifest "$HORT_RELEASE" --namespace "$HORT_NAMESPACE")"
  rbac_tool check --rbac - "${logs[@]}" --service-account "$HORT_NAMESPACE/$(operator_name)" \
    --since "$AUDIT_SINCE" "$@" <<<"$manifest" | sed 's/^/    /'
}

# Whether the cluster keeps an audit log (not in kind mode, nor a cluster started before
# cluster.sh enabled it).
have_audit_log() {
  local log; log="$("$HERE/cluster.sh" audit-log)"
  [[ -n "$log" && -s "$log" ]]
}

# ---------------------------------------------------------------------------------------------
# A second release that watches one namespace and holds only Roles there; run before the
# cluster-wide release is installed (which would reconcile the same objects).
case_namespaced() {
  local ns=hort-e2e-namespaced
  local HORT_RELEASE=$NS_RELEASE HORT_NAMESPACE=$NS_RELEASE_NAMESPACE
  case_namespace $ns
  install_hort --set operator.watchNamespace=$ns --set operator.installCRDs=false
  local manifest; manifest="$("$HELM" get manifest "$HORT_RELEASE" --namespace "$HORT_NAMESPACE")"
  note "release $HORT_RELEASE in $HORT_NAMESPACE watches $ns; RBAC objects: $(sed -n 's/^kind: \(.*Role.*\)/\1/p' <<<"$manifest" | sort | uniq -c | xargs)"
  check "the release holds no ClusterRole or ClusterRoleBinding" rbac_tool no-cluster-rbac - <<<"$manifest"
  # A PVC group, an application pod with a pre hook, a volume backup, a restore to a new claim.
  pvc_group $ns disk backup-disk
  hooked_app $ns
  wait_ready $ns storagegroup/disk 180
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: vol}
spec:
  storageGroupRef: {name: disk}
  source:
    volume: {claimName: data}
  hooks:
    pre:
      - {name: mark, pod: app, command: [sh, -c, "echo marked > /data/pre-hook"]}
---
apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata: {name: vol}
spec:
  storageGroupRef: {name: disk}
  source:
    backupJobRef: {name: vol}
  target:
    volume: {claimName: restored, storageClassName: local-path, size: 1Gi}
EOF
  wait_phase $ns backupjob/vol Succeeded 300
  check "the pre hook ran (its file is in the snapshot)" test "$(jp $ns backupjob/vol '{.status.stats.files}')" == 2
  # The volume's backup pod ran as root; a database backup (as user 65532) still writes into
  # what it wrote.
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: pg}
spec:
  storageGroupRef: {name: disk}
  source:
    postgres: {host: $PG_HOST, databases: [postgres], credentialsSecretRef: {name: db-credentials}}
EOF
  wait_phase $ns backupjob/pg Succeeded 300
  check "the database backup pod ran as 65532" \
    test "$(jp $ns pod/pg-1 '{.spec.containers[0].securityContext.runAsUser}')" == 65532
  wait_phase $ns restorerequest/vol Succeeded 300
  local back; back="$(run_pod $ns verify hort.local/busybox:stable 'cat /data/file /data/pre-hook' restored /data)"
  check "the restored claim holds both files" test "$(echo $back)" == "data marked"
  # The operator removes its finalizers; then it goes, leaving nothing cluster-wide.
  kc -n $ns delete backupjob/vol backupjob/pg restorerequest/vol --wait=true --timeout=60s >/dev/null
  if have_audit_log; then
    rbac_check --forbidden-only || fail "a request of the namespaced operator was forbidden (or none was logged)"
  else
    note "no audit log: not checked for forbidden requests"
  fi
  helm_test_answers_and_fails_without_an_operator
  uninstall_hort
}

no_operator_pod() { [[ -z "$(operator_pod)" ]]; }

# `helm test` of the current release: its pod (the agent image's bash) gets 200 from the
# operator's /readyz and /metrics; with the operator scaled to 0 the test fails and its log
# names what did not answer. Leaves the operator at 0 replicas.
helm_test_answers_and_fails_without_an_operator() {
  local out pod="${HORT_RELEASE}-test-operator"
  [[ "$HORT_RELEASE" == *hort* ]] || pod="${HORT_RELEASE}-hort-test-operator"
  out="$("$HELM" test "$HORT_RELEASE" --namespace "$HORT_NAMESPACE" --logs --timeout 120s 2>&1)" \
    || fail "helm test: $out"
  check "helm test asked /readyz and /metrics: $out" grep -q "/metrics: HTTP/1.[01] 200" <<<"$out"
  note "helm test: $(grep -o 'GET [^ ]*: HTTP/1.[01] 200' <<<"$out" | paste -sd ';')"
  kc -n "$HORT_NAMESPACE" scale "deployment/$(operator_name)" --replicas=0 >/dev/null
  wait_until 90 "no operator pod of $HORT_RELEASE" no_operator_pod
  if out="$("$HELM" test "$HORT_RELEASE" --namespace "$HORT_NAMESPACE" --timeout 120s 2>&1)"; then
    fail "helm test passed with no operator running: $out"
  fi
  out="$(kc -n "$HORT_NAMESPACE" logs "$pod" 2>&1 || true)"
  check "the failed test's log names /readyz: $out" grep -q "/readyz: want 200" <<<"$out"
  note "helm test without an operator fails: $(grep -m1 -o 'GET [^,]*' <<<"$out")"
  kc -n "$HORT_NAMESPACE" delete pod "$pod" --ignore-not-found >/dev/null
}

no_browse_pods() { [[ -z "$(kc -n "$1" get pods -l hort.dev/agent-role=browse -o name)" ]]; }

case_plugin() {
  local ns=hort-e2e-plugin plugin tmp
  plugin="$(plugin_bin)" || fail "no kubectl-hort binary: cargo build --release -p kubectl-hort, or set HORT_PLUGIN"
  hort() { "$plugin" -n $ns "$@"; }
  local op=(--operator-namespace "$HORT_NAMESPACE")
  case_namespace $ns
  s3_group $ns s3 "$S3_ENDPOINT" "$S3_BUCKET" plugin
  # Bytes a text transport would change: CR LF, NUL, invalid UTF-8, no final newline.
  fill_claim $ns 1Gi 'mkdir -p media; head -c 5000000 /dev/urandom > media/random.bin; printf "a\r\nb\000c\377" > media/odd.txt'
  local sums; sums="$(run_pod $ns sums hort.local/busybox:stable 'cd /data && md5sum media/random.bin media/odd.txt' data /data)"
  wait_ready $ns storagegroup/s3 180
  volume_job $ns vol s3
  wait_phase $ns backupjob/vol Succeeded 300
  local id; id="$(jp $ns backupjob/vol '{.status.snapshotId}')"

  local status; status="$(hort status)"
  note "status: $(grep -E '^s3 |BackupJob/' <<<"$status" | tr -s ' ' | tr '\n' ';')"
  check "status shows the group Ready" grep -Eq '^s3 +Ready' <<<"$status"

  local t0=$EPOCHREALTIME list err; err="$(mktemp)"
  list="$(hort snapshots s3 "${op[@]}" -o json 2>"$err")" || fail "snapshots failed: $(cat "$err")"
  note "snapshots (agent pod started, exec, deleted) took $(since "$t0")s"
  check "snapshots lists the BackupJob's snapshot $id" grep -q "$id" <<<"$list"
  check "the agent image came from the operator's Deployment (no fallback note)" not_in "note:" "$(cat "$err")"
  local ls; ls="$(hort ls s3 "${id:0:8}" media "${op[@]}")"
  note "ls: $(tr -s ' ' <<<"$ls" | tr '\n' ';')"
  check "ls shows media/random.bin with its size" grep -Eq '^file +[0-7]+ +5000000 .* media/random.bin$' <<<"$ls"

  tmp="$(mktemp -d)"
  t0=$EPOCHREALTIME
  hort download s3 "$id" media/random.bin -O "$tmp/random.bin" "${op[@]}" 2>/dev/null || fail "download failed"
  note "download of 5 MB took $(since "$t0")s"
  hort cat s3 latest media/odd.txt "${op[@]}" >"$tmp/odd.txt" || fail "cat failed"
  local got; got="$(cd "$tmp" && md5sum random.bin odd.txt | sed 's/  /  media\//')"
  note "original: $(tr '\n' ' ' <<<"$sums"); downloaded: $(tr '\n' ' ' <<<"$got")"
  rm -rf "$tmp"
  check "downloaded and cat bytes equal the originals" test "$got" == "$sums"

  local out rc=0
  out="$(hort snapshots nope 2>&1)" || rc=$?
  note "unknown group: exit $rc: $out"
  check "an unknown group exits 2" test "$rc" == 2
  check "the error names the group and the fix" grep -q "StorageGroup $ns/nope not found: list them with .kubectl hort status -n $ns." <<<"$out"
  rc=0; out="$(hort cat s3 "$id" media/none "${op[@]}" 2>&1)" || rc=$?
  note "missing path: exit $rc: $out"
  check "a missing path fails naming it" grep -q 'no entry "media/none"' <<<"$out"

  run_pod $ns change hort.local/busybox:stable 'cd /data && printf changed! > media/odd.txt && echo new > media/new.txt' data /data >/dev/null
  rc=0; out="$(hort backup now --from-job vol 2>&1)" || rc=$?
  note "backup now --from-job vol: exit $rc: $(tail -n 1 <<<"$out")"
  check "backup now --from-job succeeds (exit 0)" test "$rc" == 0
  check "it says the snapshot" grep -q "succeeded: snapshot" <<<"$out"
  local diff; diff="$(hort diff s3 "$id" latest media "${op[@]}")" || fail "diff failed"
  note "diff: $(tr -s ' ' <<<"$diff" | tr '\n' ';')"
  check "diff shows the changed file" grep -Eq '^M +media/odd.txt +size 7 → 8$' <<<"$diff"
  check "diff shows the added file" grep -Eq '^\+ +media/new.txt' <<<"$diff"
  check "diff leaves out the unchanged file" not_in "random.bin" "$diff"
  rc=0; out="$(hort verify s3 --repository 100 2>&1)" || rc=$?
  note "verify s3 --repository 100: exit $rc: $(tail -n 1 <<<"$out")"
  check "verify of the repository succeeds (exit 0)" test "$rc" == 0
  check "it says what passed" grep -q "the repository: [1-9][0-9]* checks passed" <<<"$out"
  wait_until 60 "no agent pod of the plugin left" no_browse_pods $ns
  overview_browses $ns "$id"
  overview_in_a_browser $ns "$id" vol
}

# overview_in_a_browser NS SNAPSHOT SUCCEEDED-JOB: headless Chromium drives the page
# (operator/tests/overview_e2e.rs) through a port-forward, with the token of ServiceAccount
# `browser` (edit in NS, made by overview_browses): SUCCEEDED-JOB, a job that runs (slowed by
# its upload limit) and one that failed (snapshot CSI of a claim no VolumeSnapshotClass serves)
# in their colours, nothing of another namespace, and media/ of SNAPSHOT in the snapshot browser.
overview_in_a_browser() {
  local ns="$1" id="$2" succeeded="$3" svc port token pf
  # Built first: the slowed job must still run when the browser looks (in CI the build took
  # 55 s, longer than that job).
  (cd "$HERE/.." && cargo test --locked -q -p hort-operator --features e2e-browser --test overview_e2e --no-run 2>&1) \
    || fail "building operator/tests/overview_e2e.rs failed"
  run_pod $ns more hort.local/busybox:stable 'head -c 4000000 /dev/urandom > /data/media/more.bin' data /data >/dev/null
  kc -n $ns apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: slow}
spec:
  storageGroupRef: {name: s3}
  source: {volume: {claimName: data}}
  bandwidth: {uploadPerSecond: 100Ki}
---
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {name: broken}
spec:
  storageGroupRef: {name: s3}
  backoffLimit: 0
  source: {volume: {claimName: data, snapshot: CSI}}
EOF
  wait_phase $ns backupjob/broken Failed 120 || true
  check "the CSI job of a claim without a snapshot class failed" test "$(jp $ns backupjob/broken '{.status.phase}')" == Failed
  wait_until 60 "the slowed job runs (progress shown)" has_progress $ns backupjob/slow
  svc="$(kc -n "$HORT_NAMESPACE" get svc -o name | sed -n 's#^service/\(.*-overview\)$#\1#p')"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  kc -n "$HORT_NAMESPACE" port-forward "service/$svc" "$port:8090" >/dev/null 2>&1 &
  pf=$!
  wait_until 30 "the port-forward to the page answers" curl -s -o /dev/null "http://127.0.0.1:$port/login"
  token="$(kc -n "$ns" create token browser --duration=10m)"
  local t0=$EPOCHREALTIME rc=0 out
  out="$(cd "$HERE/.." && HORT_E2E_OVERVIEW_URL="http://127.0.0.1:$port" HORT_E2E_TOKEN="$token" \
    HORT_E2E_NAMESPACE=$ns HORT_E2E_OTHER_NAMESPACE=hort-e2e-volume-restore HORT_E2E_SNAPSHOT="$id" \
    HORT_E2E_SUCCEEDED_JOB="$succeeded" HORT_E2E_RUNNING_JOB=slow HORT_E2E_FAILED_JOB=broken \
    cargo test --locked -q -p hort-operator --features e2e-browser --test overview_e2e 2>&1)" || rc=$?
  kill $pf 2>/dev/null || true
  note "Chromium on the page (build and run) took $(since "$t0")s: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
  if ((rc)); then tail -n 40 <<<"$out" >&2; fi
  check "Chromium saw the jobs by colour, nothing of another namespace, and the snapshot's files" test "$rc" == 0
  kc -n $ns delete backupjob slow --wait=false >/dev/null
  wait_until 60 "no agent pod of the page left" no_browse_pods $ns
}

# overview_browses NS SNAPSHOT: the overview page (enabled in this release) read from a pod in
# NS with the token of a ServiceAccount bound to `edit` there: the groups list links to the
# snapshot browser, which lists SNAPSHOT and the files of its directory media/ through an
# agent pod started with that token; none is left after.
overview_browses() {
  local ns="$1" id="$2" svc token page
  svc="$(kc -n "$HORT_NAMESPACE" get svc -o name | sed -n 's#^service/\(.*-overview\)$#\1#p')"
  check "the release has the overview Service" test -n "$svc"
  kc -n "$ns" create serviceaccount browser >/dev/null
  kc -n "$ns" create rolebinding browser-edits --clusterrole=edit --serviceaccount="$ns:browser" >/dev/null
  token="$(kc -n "$ns" create token browser --duration=10m)"
  local base="http://$svc.$HORT_NAMESPACE.svc:8090" t0=$EPOCHREALTIME
  # A test-only token of a test namespace, in the test pod's command.
  page="$(run_pod "$ns" overview hort.local/busybox:stable "set -e; for p in /groups /groups/$ns/s3/snapshots '/groups/$ns/s3/snapshots/$id?path=media'; do
      echo \"== \$p\"; wget -q -O - --header 'Authorization: Bearer $token' \"$base\$p\"; done")" \
    || fail "the overview page did not answer: $page"
  note "three overview pages (two agent pods started with the user's token) took $(since "$t0")s"
  check "the groups page links to the snapshot browser" grep -qF "href=\"/groups/$ns/s3/snapshots\">Browse snapshots" <<<"$page"
  check "the snapshot browser lists the backup's snapshot" grep -qF "href=\"/groups/$ns/s3/snapshots/$id\"" <<<"$page"
  check "the snapshot's directory media/ lists random.bin" grep -qF "<tr><td>random.bin</td><td>file</td>" <<<"$page"
  wait_until 60 "no agent pod of the page left" no_browse_pods $ns
}

absent() { ! kc -n "$1" get "$2" >/dev/null 2>&1; } # NS OBJECT

# Whether ClusterStorageGroup GROUP's status counts a snapshot of namespace NS and more than
# the 3 MB of random data its backup holds.
tenant_counted() { # GROUP NS
  local at="{.status.tenants[?(@.namespace==\"$2\")].snapshots"
  test "$(jp default clusterstoragegroup/$1 "$at.count}")" -ge 1 \
    -a "$(jp default clusterstoragegroup/$1 "$at.bytesUsed}")" -gt 3000000
}

# A BackupJob or RestoreRequest of a tenant namespace on ClusterStorageGroup GROUP.
tenant_object() { # NS KIND NAME GROUP SPEC-YAML (the rest of the spec, indented two spaces)
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: $2
metadata: {name: $3}
spec:
  storageGroupRef: {kind: ClusterStorageGroup, name: $4}
$5
EOF
}

case_tenants() {
  local op=$HORT_NAMESPACE group=e2e-shared a=hort-e2e-tenants b=hort-e2e-tenants-b c=hort-e2e-tenants-c
  kc delete clusterstoragegroup $group --ignore-not-found --wait=true >/dev/null
  # The platform team's side, in the operator's namespace: a StorageGroup, the tenant root secret.
  repository_secrets $op "$S3_ACCESS" "$S3_SECRET"
  s3_group $op shared-s3 "$S3_ENDPOINT" "$S3_BUCKET" shared
  local ns
  for ns in $a $b $c; do new_namespace $ns; done
  kc label namespace $a $b hort.dev/e2e-shared=yes >/dev/null
  # Two proxy pods behind the group's Service: every tenant request below reaches one of them.
  shared_group $group shared-s3 hort.dev/e2e-shared "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" 2
  wait_ready $op storagegroup/shared-s3 180
  wait_ready default clusterstoragegroup/$group 300
  note "group: $(condition_message default clusterstoragegroup/$group Ready); tenants $(jp default clusterstoragegroup/$group '{.status.tenants}')"
  check "both selected namespaces have a repository, the third none" \
    test "$(jp default clusterstoragegroup/$group '{.status.tenantCount}')" == 2

  fill_claim $a 64Mi 'echo "team a" > a.txt; head -c 3000000 /dev/urandom > a.bin'
  fill_claim $b 64Mi 'echo "team b" > b.txt'
  fill_claim $c 64Mi 'echo "team c" > c.txt'
  local sums; sums="$(run_pod $a sums hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' data /data)"
  local spec='  source: {volume: {claimName: data}}'
  for ns in $a $b $c; do tenant_object $ns BackupJob vol $group "$spec"; done
  wait_phase $a backupjob/vol Succeeded 300
  wait_phase $b backupjob/vol Succeeded 300
  wait_phase $c backupjob/vol Failed 120
  local id_a id_b
  id_a="$(jp $a backupjob/vol '{.status.snapshotId}')"
  id_b="$(jp $b backupjob/vol '{.status.snapshotId}')"
  note "snapshots: $a $id_a, $b $id_b; $c: $(condition_message $c backupjob/vol Failed)"
  check "each tenant has its snapshot" test -n "$id_a" -a -n "$id_b"
  check "the group's proxy runs its two replicas" \
    test "$(jp $op deployment/hort-store-$group '{.status.availableReplicas}')" == 2
  check "the namespace not selected fails with NamespaceNotAllowed" \
    test "$(jp $c backupjob/vol '{.status.conditions[?(@.type=="Failed")].reason}')" == NamespaceNotAllowed
  check "... and started no agent pod" test -z "$(kc -n $c get pods -l hort.dev/agent-role=backup -o name)"

  # Tenant a restores its own snapshot through the proxy; b cannot read a's by id.
  tenant_object $a RestoreRequest own $group "  source: {snapshotId: $id_a}
  target: {volume: {claimName: restored, storageClassName: local-path, size: 64Mi}}"
  tenant_object $b RestoreRequest other $group "  source: {snapshotId: $id_a}
  target: {volume: {claimName: restored, storageClassName: local-path, size: 64Mi}}"
  wait_phase $a restorerequest/own Succeeded 300
  local back; back="$(run_pod $a verify hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' restored /data)"
  check "tenant a's files come back unchanged" test "$back" == "$sums"
  wait_phase $b restorerequest/other Failed 300
  note "b restoring a's snapshot: $(jp $b restorerequest/other '{.status.message}' | cut -c1-200)"

  # A claim of tenant a filled by the populator from its snapshot, through the proxy.
  kc -n $a apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: VolumeRestoreSource
metadata: {name: vol}
spec:
  storageGroupRef: {kind: ClusterStorageGroup, name: $group}
  source: {backupJobRef: {name: vol}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: populated}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: hort-csi
  resources: {requests: {storage: 64Mi}}
  dataSourceRef: {apiGroup: hort.dev, kind: VolumeRestoreSource, name: vol}
EOF
  back="$(run_pod $a filled hort.local/busybox:stable 'cd /data && find . -type f | sort | xargs md5sum' populated /data)"
  check "a claim populated from tenant a's snapshot (VolumeRestoreSource on the shared group) holds its files" \
    test "$back" == "$sums"

  # Tenant a proves its snapshot and its repository through the proxy; c is refused.
  tenant_object $a Verification files $group "  source: {backupJobRef: {name: vol}}
  volume: {storageClassName: local-path, size: 64Mi}"
  tenant_object $a Verification packs $group "  repository: {readDataPercent: 100}"
  tenant_object $c Verification packs $group "  repository: {readDataPercent: 100}"
  wait_phase $a verification/files Succeeded 300
  wait_phase $a verification/packs Succeeded 300
  wait_phase $c verification/packs Failed 120
  note "a's verifications: $(jp $a verification/files '{.status.message}' | cut -c1-160); $(jp $a verification/packs '{.status.message}' | cut -c1-160)"
  local read stored
  read="$(jp $a verification/packs '{.status.repository.packsRead}')"
  stored="$(jp $a verification/packs '{.status.repository.packsStored}')"
  check "tenant a's repository verification read every pack of its own repository ($read of $stored)" \
    test "${read:-0}" -gt 0 -a "$read" == "$stored"
  check "the namespace not selected cannot verify either (NamespaceNotAllowed)" \
    test "$(jp $c verification/packs '{.status.conditions[?(@.type=="Failed")].reason}')" == NamespaceNotAllowed

  # A tenant check after a's backup counted its snapshot and listed its S3 prefix's size.
  wait_until 150 "a's snapshot counted in the group's status" tenant_counted $group $a \
    || fail "the group's status counts tenant a's snapshot and measures its repository"
  note "a in the group's status: $(jp default clusterstoragegroup/$group "{.status.tenants[?(@.namespace==\"$a\")].snapshots}")"

  # No tenant pod names a Secret but its namespace's own password (and no storage credential).
  local refs
  refs="$(kc get pods -n $a -o json; kc get pods -n $b -o json)"
  refs="$(python3 -c 'import json,sys
names=set()
for doc in sys.stdin.read().replace("}\n{", "}\x00{").split("\x00"):
    for p in json.loads(doc)["items"]:
        for c in p["spec"]["containers"]:
            for e in c.get("env") or []:
                r=(e.get("valueFrom") or {}).get("secretKeyRef")
                if r: names.add(r["name"])
        for v in p["spec"].get("volumes") or []:
            if v.get("secret"): names.add(v["secret"]["secretName"])
            for s in (v.get("projected") or {}).get("sources") or []:
                if s.get("secret"): names.add(s["secret"]["name"])
print(" ".join(sorted(names)))' <<<"$refs")"
  note "Secrets the tenant pods name: $refs"
  check "tenant pods name only hort-tenant-$group" test "$refs" == "hort-tenant-$group"

  kc delete clusterstoragegroup $group --wait=true >/dev/null
  wait_until 60 "the proxy's Deployment removed with the group" absent $op deployment/hort-store-$group \
    || fail "deleting the group removes its proxy"
  kc -n $op delete storagegroup shared-s3 --wait=true >/dev/null
  kc -n $op delete secret tenant-root hort-repository-password s3-credentials >/dev/null
}

case_rbac-audit() {
  if ! have_audit_log; then
    note "SKIPPED: the cluster keeps no audit log (kind mode, or started before cluster.sh enabled it: down, then up)"
    return 0
  fi
  local c args=()
  for c in "${ALL_CASES[@]}"; do
    [[ "$c" == namespaced || "$c" == rbac-audit ]] && continue
    want "$c" || { args=(--forbidden-only); note "case $c did not run: only forbidden requests are checked"; break; }
  done
  rbac_check "${args[@]}" || fail "the chart's RBAC does not match the operator's requests (FAIL lines above)"
}

# ---------------------------------------------------------------------------------------------
run_case namespaced "namespaced install (operator.watchNamespace): Roles only, PVC group, backup with hook, restore"
t1=$EPOCHREALTIME
# Case plugin drives the overview page with headless Chromium.
if want plugin; then "$HERE/../scripts/install-chromium.sh"; fi
install_hort --set overview.enabled=true --set populator.enabled=true
echo "== chart installed, operator available ($(since "$t1")s)"

if want schedule-retention; then
  echo "== schedule-retention: starting the schedule (checked last)"
  set +e; (set -euo pipefail; start_schedule_retention); rc=$?; set -e
  if ((rc == 0)); then G_STARTED=$EPOCHREALTIME; fi
fi
run_case invalid-specs "invalid specs are rejected by kubectl apply with a message naming the field"
run_case groups-ready "StorageGroups on S3 and on a PVC become Ready (check --init)"
run_case wrong-s3-key "wrong S3 credentials: group not Ready with a clear message, BackupJob waits without a pod"
run_case volume-restore "volume backup to S3, restore into a new claim, contents compared; the password rotated by the group: the old one opens nothing, the new one both snapshots"
run_case populator "a claim whose dataSourceRef names a VolumeRestoreSource is filled from the backup (its paths only) before the application pod starts; nothing left"
run_case postgres-rename "PostgreSQL backup to S3, restore one database under a new name, rows compared"
run_case verification "Verifications of a PostgreSQL backup in a throwaway server: a true assertion passes, a false one fails naming it, nothing left; the repository's packs read, a damaged one named; of a volume backup with a command of the user's: exit 0 passes, exit 1 fails with its output"
run_case mariadb-table "MariaDB backup to a PVC target, restore one table, rows compared; a Verification of the backup in a throwaway MariaDB server"
run_case agent-killed "agent pod deleted mid-backup (progress shown first): retried, Succeeded, verify OK; restore progress shown"
run_case operator-restart "operator deleted mid-backup: finishes once, exactly one snapshot"
run_case hooks "backup hooks run in the application pod; a failing pre hook fails the job before any data is read"
run_case mirror-outage "Mirror group: S3 target down, backups go on (Degraded), resync levels it, the other target lost, restore matches"
run_case csi-snapshot "CSI snapshot and VolumeGroupSnapshot between hooks: restored records are one point in time; None reads live"
run_case schedule-retention "Schedule every minute, keepLast 1: two runs, prune ran, old snapshot gone; its verifications restore into a temporary claim, only the newest kept"
run_case plugin "kubectl hort: status, snapshots, ls, cat and download (bytes equal), backup now; unknown group named; the overview page's snapshot browser, and the page in headless Chromium"
run_case tenants "a ClusterStorageGroup shared by two namespaces: each backs up and restores through the proxy (two pods), neither reads the other's snapshot, one verifies its snapshot and its repository and fills a claim from it, a third namespace is refused; tenant pods name no Secret but their own password"
run_case rbac-audit "the chart's RBAC against the audit log: every verb granted was used, none forbidden"

echo
echo "== summary ($(since "$T_ALL")s in all)"
printf '%s\n' "${RESULTS[@]}"
echo "$(grep -c '^PASS' <<<"$(printf '%s\n' "${RESULTS[@]}")" || true) passed, $FAILED failed"
((FAILED == 0))
