#!/usr/bin/env bash
# Smoke tests for the local cluster (kind-tests/cluster.sh up must have run).
#   1. a pod runs to completion and its logs are read
#   2. a Deployment behind a Service is reached by DNS name from another pod
#   3. a PVC is provisioned, written by one pod and read by a second
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

# ---- 4. test images: server Deployment + Service, and a client pod
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
