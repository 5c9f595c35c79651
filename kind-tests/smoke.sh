#!/usr/bin/env bash
# Smoke tests for the local cluster (kind-tests/cluster.sh up must have run).
#   1. a pod runs to completion and its logs are read
#   2. a Deployment behind a Service is reached by DNS name from another pod
#   3. a PVC is provisioned, written by one pod and read by a second
#   4. CSI (the test driver): a VolumeSnapshot of a claim becomes ready; a claim restored from it
#      holds the data of snapshot time (mounted read-only); a clone of a claim holds its data;
#      after deleting them no PV, VolumeSnapshotContent or driver directory is left; a
#      VolumeGroupSnapshot of two claims has a ready member snapshot of each, and leaves nothing
#   with --images (after `kind-tests/images.sh build`): the PostgreSQL, MariaDB and S3 test images
#   are imported, start in the cluster and answer a client
# Prints "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"
CACHE="${HORT_CACHE:-$HOME/.cache/hort}"
KUBECTL="${KUBECTL:-$CACHE/bin/$K8S_VERSION/kubectl}"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl)" || { echo "smoke.sh: no kubectl" >&2; exit 1; }
KUBECONFIG="${KUBECONFIG:-$("$HERE/cluster.sh" kubeconfig)}"
export KUBECONFIG
IMAGE="${HORT_SMOKE_IMAGE:-hort.local/busybox:stable}"
NS="hort-smoke-$$"
WITH_IMAGES=0
for a in "$@"; do
  case "$a" in
    --images) WITH_IMAGES=1 ;;
    *) echo "usage: $0 [--images]" >&2; exit 2 ;;
  esac
done
k() { "$KUBECTL" -n "$NS" "$@"; }

passed=0 failed=0
ok() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1" >&2; failed=$((failed + 1)); }

wait_phase() { # pod phase timeout
  local deadline=$((SECONDS + $3)) p
  while :; do
    p="$(k get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    [[ "$p" == "$2" ]] && return 0
    [[ "$p" == Failed && "$2" != Failed ]] && return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

run_pod() { # name script [extra pod spec yaml (volumes), extra container yaml (volumeMounts)]
  local name="$1" script="$2" vols="${3:-}" mounts="${4:-}" image="${POD_IMAGE:-$IMAGE}"
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $image
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", $(printf '%s' "$script" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
$mounts
$vols
EOF
}

debug_pod() { k describe pod "$1" | tail -n 20 >&2 || true; k logs "$1" >&2 || true; }

t0=$SECONDS
"$KUBECTL" create namespace "$NS" >/dev/null
cleanup() { "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
# the namespace's default ServiceAccount must exist before pods can be created
for _ in $(seq 1 60); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done

# ---- 1. pod to completion, logs
run_pod hello 'echo hello from hort; uname -s'
if wait_phase hello Succeeded 90 && [[ "$(k logs hello)" == $'hello from hort\nLinux' ]]; then
  ok "pod runs to completion and its logs are read"
else
  debug_pod hello; fail "pod runs to completion and its logs are read"
fi

# ---- 2. Deployment + Service reached by DNS name
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: $IMAGE
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo served-by-\$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
if k rollout status deployment/web --timeout=90s >/dev/null; then
  # (busybox 1.35's wget crashes with -T, hence `timeout`)
  run_pod client "nslookup web.$NS.svc.cluster.local && timeout 10 wget -q -O - http://web.$NS.svc.cluster.local/ && timeout 10 wget -q -O - http://web/"
  if wait_phase client Succeeded 90 && [[ "$(k logs client | grep -c '^served-by-web-')" == 2 ]]; then
    ok "Deployment behind a Service reached by DNS name from another pod"
  else
    debug_pod client; fail "Deployment behind a Service reached by DNS name from another pod"
  fi
else
  k describe pods -l app=web | tail -n 20 >&2; fail "Deployment web did not become available"
fi

# ---- 3. PVC provisioned, written by one pod, read by another
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
EOF
VOLS='  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}'
MOUNTS='    volumeMounts:
    - {name: data, mountPath: /data}'
token="hort-$RANDOM-$RANDOM"
run_pod writer "echo $token > /data/token && sync" "$VOLS" "$MOUNTS"
if wait_phase writer Succeeded 120; then
  run_pod reader "cat /data/token" "$VOLS" "$MOUNTS"
  if wait_phase reader Succeeded 90 && [[ "$(k logs reader)" == "$token" ]] \
     && [[ "$(k get pvc data -o jsonpath='{.status.phase}')" == Bound ]]; then
    ok "PVC provisioned ($(k get pvc data -o jsonpath='{.spec.volumeName}')), written by one pod, read by another"
  else
    debug_pod reader; fail "PVC read by a second pod"
  fi
else
  debug_pod writer; k describe pvc data | tail -n 10 >&2 || true; fail "PVC provisioned and written"
fi

# ---- 4. CSI: a snapshot of a claim holds the data of snapshot time; restore and clone
# (the CSI test driver, StorageClass and VolumeSnapshotClass hort-csi; plain-process cluster only)
until_ok() { # timeout command...: runs command every 0.5 s until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 0.5; done
}
csi_pvc() { # name [dataSource yaml]
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $1
spec:
  storageClassName: ${CSI_CLASS:-hort-csi}
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
  ${2:-}
EOF
}
csi_vols() { # claim [readOnly]
  printf '  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: %s, readOnly: %s}\n' "$1" "${2:-false}"
}
snapshot_ready() { [[ "$(k get volumesnapshot "$1" -o jsonpath='{.status.readyToUse}')" == true ]]; }
ns_pvs() { # this namespace's PVs of the CSI test driver
  "$KUBECTL" get pv -o jsonpath="{range .items[?(@.spec.claimRef.namespace==\"$NS\")]}{.spec.csi.driver} {.metadata.name}{'\n'}{end}" \
    | awk '$1 == "csi.hort.test" {print $2}'
}
ns_csi_objects() { # PVs and VolumeSnapshotContents of this namespace's claims and snapshots
  ns_pvs
  "$KUBECTL" get volumesnapshotcontent -o jsonpath="{range .items[?(@.spec.volumeSnapshotRef.namespace==\"$NS\")]}{.metadata.name}{'\n'}{end}"
}
no_ns_csi_objects() { [[ -z "$(ns_csi_objects)" ]]; }

csi_case() {
  local t1="before-$RANDOM" t2="after-$RANDOM" t_snap snap_s content handle vols v left=""
  local state="${HORT_CLUSTER_DIR:-$CACHE/cluster}/csi"
  csi_pvc csi-src
  run_pod csi-writer "echo $t1 > /data/file && sync" "$(csi_vols csi-src)" "$MOUNTS"
  if ! wait_phase csi-writer Succeeded 120; then
    debug_pod csi-writer; k describe pvc csi-src | tail -n 10 >&2; fail "CSI: a pod writes to a hort-csi claim"; return
  fi
  t_snap=$SECONDS
  k apply -f - >/dev/null <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata:
  name: csi-snap
spec:
  volumeSnapshotClassName: hort-csi
  source: {persistentVolumeClaimName: csi-src}
EOF
  if ! until_ok 60 snapshot_ready csi-snap; then
    k describe volumesnapshot csi-snap | tail -n 15 >&2; fail "CSI: VolumeSnapshot readyToUse"; return
  fi
  snap_s=$((SECONDS - t_snap))
  content="$(k get volumesnapshot csi-snap -o jsonpath='{.status.boundVolumeSnapshotContentName}')"
  handle="$("$KUBECTL" get volumesnapshotcontent "$content" -o jsonpath='{.status.snapshotHandle}')"
  run_pod csi-changer "echo $t2 > /data/file && sync" "$(csi_vols csi-src)" "$MOUNTS"
  if ! wait_phase csi-changer Succeeded 120; then
    debug_pod csi-changer; fail "CSI: the source claim changed after the snapshot"; return
  fi
  # restored from the snapshot, mounted read-only: the data of snapshot time, and no writes
  csi_pvc csi-restored 'dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: csi-snap}'
  run_pod csi-reader 'cat /data/file; if touch /data/x 2>/dev/null; then echo writable; else echo read-only; fi' \
    "$(csi_vols csi-restored true)" "$MOUNTS"
  if wait_phase csi-reader Succeeded 120 && [[ "$(k logs csi-reader)" == "$t1"$'\n'read-only ]]; then
    ok "CSI: VolumeSnapshot ready in ${snap_s}s; a claim restored from it holds the data of snapshot time (read-only mount)"
  else
    debug_pod csi-reader; k describe pvc csi-restored | tail -n 10 >&2; fail "CSI: a claim restored from a VolumeSnapshot"
  fi
  # cloned from the source claim: its current data
  csi_pvc csi-clone 'dataSource: {kind: PersistentVolumeClaim, name: csi-src}'
  run_pod csi-clone-reader 'cat /data/file' "$(csi_vols csi-clone)" "$MOUNTS"
  if wait_phase csi-clone-reader Succeeded 120 && [[ "$(k logs csi-clone-reader)" == "$t2" ]]; then
    ok "CSI: a claim cloned from a claim holds its current data"
  else
    debug_pod csi-clone-reader; fail "CSI: a claim cloned from a claim"
  fi
  # everything deleted: no PV, VolumeSnapshotContent or driver directory is left
  vols="$(ns_pvs)"
  k delete pod csi-writer csi-changer csi-reader csi-clone-reader --wait=true >/dev/null
  k delete volumesnapshot csi-snap --wait=true --timeout=60s >/dev/null
  k delete pvc csi-src csi-restored csi-clone --wait=true --timeout=60s >/dev/null
  if ! until_ok 60 no_ns_csi_objects; then
    fail "CSI: left after deleting the snapshot and claims: $(ns_csi_objects | tr '\n' ' ')"; return
  fi
  for v in $vols; do [[ -e "$state/volumes/$v" ]] && left+=" volume $v"; done
  [[ -n "$handle" && -e "$state/snapshots/$handle" ]] && left+=" snapshot $handle"
  if [[ -z "$left" && -n "$vols" ]]; then
    ok "CSI: after deleting snapshot and claims no PV, VolumeSnapshotContent or driver directory is left"
  else
    fail "CSI: driver directories left in $state:${left:- (no PVs were seen)}"
  fi
}
# A VolumeGroupSnapshot of two claims (selected by label): one ready member snapshot per claim;
# deleting it leaves no VolumeSnapshotContent, VolumeGroupSnapshotContent or driver directory.
group_ready() { [[ "$(k get volumegroupsnapshot "$1" -o jsonpath='{.status.readyToUse}')" == true ]]; }
ns_group_contents() {
  "$KUBECTL" get volumegroupsnapshotcontent -o jsonpath="{range .items[?(@.spec.volumeGroupSnapshotRef.namespace==\"$NS\")]}{.metadata.name}{'\n'}{end}"
}
no_ns_group_objects() { [[ -z "$(ns_csi_objects)$(ns_group_contents)" ]]; }
ready_members() {
  k get volumesnapshot -o jsonpath='{range .items[?(@.status.readyToUse==true)]}{.spec.source.persistentVolumeClaimName}{" "}{end}'
}
both_members_ready() { members="$(ready_members)"; [[ "$members" == *grp-a* && "$members" == *grp-b* ]]; }

csi_group_case() {
  local c members state="${HORT_CLUSTER_DIR:-$CACHE/cluster}/csi" t_group ids group id left=""
  for c in grp-a grp-b; do
    CSI_CLASS=hort-csi-immediate csi_pvc "$c"
    k label pvc "$c" hort-smoke-group=yes >/dev/null
  done
  t_group=$SECONDS
  k apply -f - >/dev/null <<EOF
apiVersion: groupsnapshot.storage.k8s.io/v1
kind: VolumeGroupSnapshot
metadata:
  name: grp
spec:
  volumeGroupSnapshotClassName: hort-csi
  source: {selector: {matchLabels: {hort-smoke-group: "yes"}}}
EOF
  if until_ok 60 group_ready grp; then
    # the snapshot controller marks the member snapshots ready after the group, not with it
    if until_ok 30 both_members_ready; then
      ok "CSI: VolumeGroupSnapshot of two claims ready in $((SECONDS - t_group))s with a ready member snapshot of each"
    else
      fail "CSI: VolumeGroupSnapshot members: '$members'"
    fi
  else
    k describe volumegroupsnapshot grp | tail -n 15 >&2; fail "CSI: VolumeGroupSnapshot readyToUse"
  fi
  ids="$(ns_pvs) $("$KUBECTL" get volumesnapshotcontent -o jsonpath="{range .items[?(@.spec.volumeSnapshotRef.namespace==\"$NS\")]}{.status.snapshotHandle}{' '}{end}")"
  group="$("$KUBECTL" get volumegroupsnapshotcontent -o jsonpath="{range .items[?(@.spec.volumeGroupSnapshotRef.namespace==\"$NS\")]}{.status.volumeGroupSnapshotHandle}{end}")"
  k delete volumegroupsnapshot grp --wait=true --timeout=60s >/dev/null
  k delete pvc grp-a grp-b --wait=true --timeout=60s >/dev/null
  if until_ok 60 no_ns_group_objects; then
    for id in $ids; do [[ -e "$state/volumes/$id" || -e "$state/snapshots/$id" ]] && left+=" $id"; done
    [[ -n "$group" && -e "$state/groups/$group.json" ]] && left+=" group $group"
    if [[ -z "$left" && -n "$group" ]]; then
      ok "CSI: after deleting the group snapshot and claims no content object or driver directory is left"
    else
      fail "CSI: left in $state:${left:- (no group snapshot handle was seen)}"
    fi
  else
    fail "CSI: left after deleting the group snapshot: $(ns_csi_objects) $(ns_group_contents)"
  fi
}

if "$KUBECTL" get storageclass hort-csi >/dev/null 2>&1; then
  t_csi=$SECONDS
  csi_case
  csi_group_case
  echo "CSI case took $((SECONDS - t_csi))s"
else
  echo "SKIP: CSI (no StorageClass hort-csi: the kind path installs no CSI test driver)"
fi

# ---- 5. test images: server Deployment + Service, and a client pod
server() { # name image port env-yaml
  k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $1
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: $2
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: $3}]
        env: $4
        readinessProbe:
          tcpSocket: {port: $3}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: $1
spec:
  selector: {app: $1}
  ports: [{port: $3}]
EOF
}

client_check() { # name image script expected-last-line
  local name="$1"
  POD_IMAGE="$2" run_pod "$name-client" "$3"
  if wait_phase "$name-client" Succeeded 120 && [[ "$(k logs "$name-client" | tail -n 1)" == "$4" ]]; then
    ok "$name test image starts in the cluster and answers a client"
  else
    debug_pod "$name-client"; k logs "deploy/$name" 2>/dev/null | tail -n 20 >&2 || true
    fail "$name test image starts in the cluster and answers a client"
  fi
}

if ((WITH_IMAGES)); then
  "$HERE/images.sh" import test-postgres test-mariadb test-s3
  server postgres hort.local/test-postgres:dev 5432 '[{name: POSTGRES_PASSWORD, value: hort}]'
  server mariadb hort.local/test-mariadb:dev 3306 '[{name: MARIADB_ROOT_PASSWORD, value: hort}]'
  server s3 hort.local/test-s3:dev 9000 \
    '[{name: S3_ACCESS_KEY, value: smoke-access}, {name: S3_SECRET_KEY, value: smoke-secret-key}, {name: S3_BUCKETS, value: smoke}]'
  client_check postgres hort.local/test-postgres:dev \
    'for i in $(seq 90); do pg_isready -q -h postgres && break; sleep 1; done; PGPASSWORD=hort psql -h postgres -U postgres -tAc "select 40 + 2"' 42
  client_check mariadb hort.local/test-mariadb:dev \
    'for i in $(seq 90); do mariadb-admin -h mariadb -uroot -phort ping >/dev/null 2>&1 && break; sleep 1; done; mariadb -h mariadb -uroot -phort -N -e "select 40 + 2"' 42
  client_check s3 hort.local/test-s3:dev \
    'set -e; a="aws:amz:us-east-1:s3"; u="smoke-access:smoke-secret-key"; h="x-amz-content-sha256: UNSIGNED-PAYLOAD"
     for i in $(seq 60); do curl -fsS -o /dev/null --aws-sigv4 "$a" --user "$u" -H "$h" http://s3:9000/smoke && break; sleep 1; done
     curl -fsS --aws-sigv4 "$a" --user "$u" -H "$h" -X PUT --data-binary hello-s3 http://s3:9000/smoke/object
     curl -fsS --aws-sigv4 "$a" --user "$u" -H "$h" http://s3:9000/smoke/object; echo
     code=$(curl -s -o /dev/null -w "%{http_code}" --aws-sigv4 "$a" --user "smoke-access:wrong" -H "$h" http://s3:9000/smoke/object)
     [ "$code" = 403 ] && echo hello-s3-authenticated' hello-s3-authenticated
fi

echo "smoke tests took $((SECONDS - t0))s"
echo "$passed passed, $failed failed"
((failed == 0))
