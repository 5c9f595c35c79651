# shellcheck shell=bash
# Functions shared by kind-tests/e2e.sh and scripts/quickstart.sh (source this file; it sets
# no shell options). Everything talks to the cluster of `kind-tests/cluster.sh` through
# $KUBECTL with $KUBECONFIG, and installs Hort with the helm binary that build.sh made.
#
# Settings (environment):
#   HORT_RELEASE (hort), HORT_NAMESPACE (hort-system)  the chart's release and namespace
#   HORT_IMAGE_TAG (dev)                               tag of hort.local/hort-{operator,agent}
#   KUBECTL, HELM                                      binaries (default: ~/.cache/hort/bin/<k8s>/)

HORT_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HORT_REPO_DIR="$(cd "$HORT_LIB_DIR/.." && pwd)"
# shellcheck source=kind-tests/versions.sh
source "$HORT_LIB_DIR/versions.sh"
export AWS_EC2_METADATA_DISABLED=true

HORT_CACHE_DIR="${HORT_CACHE:-$HOME/.cache/hort}"
KUBECTL="${KUBECTL:-$HORT_CACHE_DIR/bin/$K8S_VERSION/kubectl}"
HELM="${HELM:-$HORT_CACHE_DIR/bin/$K8S_VERSION/helm}"
HORT_RELEASE="${HORT_RELEASE:-hort}"
HORT_NAMESPACE="${HORT_NAMESPACE:-hort-system}"
HORT_IMAGE_TAG="${HORT_IMAGE_TAG:-dev}"
# shellcheck disable=SC2034 # used by scripts/quickstart.sh
HORT_OPERATOR_IMAGE="hort.local/hort-operator:$HORT_IMAGE_TAG"
HORT_AGENT_IMAGE="hort.local/hort-agent:$HORT_IMAGE_TAG"
# The chart's operator Deployment and ServiceAccount of release $HORT_RELEASE:
# <release>-operator when the release name contains "hort", else <release>-hort-operator.
operator_name() {
  if [[ "$HORT_RELEASE" == *hort* ]]; then echo "$HORT_RELEASE-operator"; else echo "$HORT_RELEASE-hort-operator"; fi
}

kc() { "$KUBECTL" "$@"; }

# ---- time and output

# Seconds since START (an $EPOCHREALTIME value), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
note() { printf '  %s\n' "$*" >&2; }

# ---- waiting

# wait_until TIMEOUT WHAT COMMAND...: runs COMMAND every second until it succeeds.
wait_until() {
  local timeout="$1" what="$2" deadline; shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${timeout}s waiting for $what" >&2
      return 1
    fi
    sleep 1
  done
}

# jp NS OBJECT JSONPATH: a field of an object, empty when the object or field is missing.
jp() { kc -n "$1" get "$2" -o jsonpath="$3" 2>/dev/null || true; }

# condition NS OBJECT TYPE: the status (True/False/Unknown) of a condition.
condition() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].status}"; }
condition_message() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].reason}: {.status.conditions[?(@.type==\"$3\")].message}"; }

# wait_phase NS OBJECT PHASE TIMEOUT: waits for status.phase; stops early at another terminal
# phase (Succeeded/Failed) and prints the object's message.
wait_phase() {
  local ns="$1" obj="$2" want="$3" timeout="$4" deadline phase=""
  deadline=$((SECONDS + timeout))
  while :; do
    phase="$(jp "$ns" "$obj" '{.status.phase}')"
    [[ "$phase" == "$want" ]] && return 0
    if [[ "$phase" == Succeeded || "$phase" == Failed ]]; then
      echo "$obj is $phase, not $want: $(jp "$ns" "$obj" '{.status.message}')" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "timed out after ${timeout}s waiting for $obj to be $want (phase: ${phase:-none}; $(jp "$ns" "$obj" '{.status.message}'))" >&2
      return 1
    fi
    sleep 1
  done
}

# is_ready NS OBJECT: whether the object's condition Ready is True.
is_ready() { [[ "$(condition "$1" "$2" Ready)" == True ]]; }
test_condition() { [[ "$(condition "$1" "$2" "$3")" == "$4" ]]; } # NS OBJ TYPE STATUS

# wait_ready NS STORAGEGROUP TIMEOUT: waits for condition Ready=True; on timeout also says why
# it is not.
wait_ready() {
  wait_until "$3" "$2 Ready" is_ready "$1" "$2" || {
    echo "  ($2: $(condition_message "$1" "$2" Ready))" >&2
    return 1
  }
}

# wait_pod_done NS POD TIMEOUT: waits until a pod has Succeeded or Failed; prints the phase.
wait_pod_done() {
  local ns="$1" pod="$2" timeout="$3" deadline phase
  deadline=$((SECONDS + timeout))
  while :; do
    phase="$(jp "$ns" "pod/$pod" '{.status.phase}')"
    if [[ "$phase" == Succeeded || "$phase" == Failed ]]; then echo "$phase"; return 0; fi
    if ((SECONDS >= deadline)); then echo "timed out after ${timeout}s waiting for pod $pod (phase: ${phase:-none})" >&2; return 1; fi
    sleep 1
  done
}

# ---- namespaces

# new_namespace NS: (re)creates a namespace and waits for its default ServiceAccount.
new_namespace() {
  local ns="$1"
  if kc get namespace "$ns" >/dev/null 2>&1; then
    kc delete namespace "$ns" --wait=true --timeout=120s >/dev/null
  fi
  kc create namespace "$ns" >/dev/null
  wait_until 60 "ServiceAccount default in $ns" kc -n "$ns" get serviceaccount default
}

# ---- Hort itself

# install_hort [HELM ARGS...]: installs or upgrades the chart with the local images and waits
# until the operator is available.
install_hort() {
  kc create namespace "$HORT_NAMESPACE" --dry-run=client -o yaml | kc apply -f - >/dev/null
  # The tag stays `dev` when the image is rebuilt: an annotation that follows the image archive
  # makes an upgrade restart the operator on the new image.
  local archive="$HORT_CACHE_DIR/images/hort-operator.tar" stamp=none
  [[ -f "$archive" ]] && stamp="$(stat -c %Y-%s "$archive")"
  "$HELM" upgrade --install "$HORT_RELEASE" "$HORT_REPO_DIR/charts/hort" --namespace "$HORT_NAMESPACE" \
    --set operator.image.repository=hort.local/hort-operator --set operator.image.tag="$HORT_IMAGE_TAG" \
    --set operator.image.pullPolicy=Never \
    --set agent.image.repository=hort.local/hort-agent --set agent.image.tag="$HORT_IMAGE_TAG" \
    --set agent.image.pullPolicy=Never \
    --set-string operator.logLevel="hort_operator=debug\\,info" \
    --set-string "operator.podAnnotations.hort\\.dev/image-archive=$stamp" \
    "$@" --wait --timeout 180s 2>&1 >/dev/null | { grep -v 'found symbolic link in path' || true; } >&2
  ((PIPESTATUS[0] == 0)) || return 1
  kc -n "$HORT_NAMESPACE" rollout status "deployment/$(operator_name)" --timeout=120s >/dev/null
  wait_until 60 "the CRDs" kc get crd storagegroups.hort.dev backupjobs.hort.dev schedules.hort.dev restorerequests.hort.dev
}

uninstall_hort() {
  "$HELM" uninstall "$HORT_RELEASE" --namespace "$HORT_NAMESPACE" --wait --timeout 120s >/dev/null 2>&1 || true
}

operator_pod() {
  kc -n "$HORT_NAMESPACE" get pods -l "app.kubernetes.io/instance=$HORT_RELEASE,app.kubernetes.io/component=operator" \
    -o jsonpath='{.items[0].metadata.name}' 2>/dev/null
}

# The kubectl plugin: $HORT_PLUGIN, else the release build in the repository or in
# $CARGO_TARGET_DIR (scripts/test.sh builds it with the images' binaries).
plugin_bin() {
  local c
  for c in "${HORT_PLUGIN:-}" "$HORT_REPO_DIR/target/release/kubectl-hort" \
    "${CARGO_TARGET_DIR:-$HOME/.cache/hort/cargo-target}/release/kubectl-hort"; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

# ---- test servers (the kind-tests/images test images)

# deploy_server NS NAME IMAGE PORT ENV-JSON: a one-replica Deployment and a Service NAME:PORT.
deploy_server() {
  local ns="$1" name="$2" image="$3" port="$4" env="$5"
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, labels: {app: $name}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      enableServiceLinks: false
      terminationGracePeriodSeconds: 2
      containers:
        - name: server
          image: $image
          imagePullPolicy: IfNotPresent
          ports: [{containerPort: $port}]
          env: $env
          readinessProbe: {tcpSocket: {port: $port}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: $name}
spec:
  selector: {app: $name}
  ports: [{port: $port}]
EOF
}

# deploy_s3 NS ACCESS SECRET BUCKETS: S3 server "s3" on port 9000 (s3s-fs, real SigV4).
deploy_s3() {
  deploy_server "$1" s3 hort.local/test-s3:dev 9000 \
    "[{name: S3_ACCESS_KEY, value: \"$2\"}, {name: S3_SECRET_KEY, value: \"$3\"}, {name: S3_BUCKETS, value: \"$4\"}]"
}
# deploy_postgres NS PASSWORD: PostgreSQL 15 "postgres" on 5432, user postgres.
deploy_postgres() { deploy_server "$1" postgres hort.local/test-postgres:dev 5432 "[{name: POSTGRES_PASSWORD, value: \"$2\"}]"; }
# deploy_mariadb NS PASSWORD: MariaDB 10.11 "mariadb" on 3306, user root.
deploy_mariadb() { deploy_server "$1" mariadb hort.local/test-mariadb:dev 3306 "[{name: MARIADB_ROOT_PASSWORD, value: \"$2\"}]"; }

# wait_servers NS NAME...: waits for the Deployments and for the databases to answer.
wait_servers() {
  local ns="$1" name; shift
  for name in "$@"; do
    kc -n "$ns" rollout status "deployment/$name" --timeout=180s >/dev/null || return 1
    case "$name" in
      postgres) wait_until 90 "PostgreSQL in $ns" kc -n "$ns" exec deploy/postgres -- pg_isready -q -h 127.0.0.1 || return 1 ;;
      mariadb) wait_until 90 "MariaDB in $ns" kc -n "$ns" exec deploy/mariadb -- sh -c 'mariadb-admin -uroot -p"$MARIADB_ROOT_PASSWORD" ping' || return 1 ;;
    esac
  done
}

# psql NS SQL [DATABASE]: runs SQL in the postgres pod, unaligned tuples only.
psql_in() { kc -n "$1" exec -i deploy/postgres -- env PGOPTIONS=--client-min-messages=warning psql -v ON_ERROR_STOP=1 -qtA -U postgres -d "${3:-postgres}" -c "$2"; }
# mariadb NS SQL [DATABASE]: runs SQL in the mariadb pod, no column names.
mariadb_in() { kc -n "$1" exec -i deploy/mariadb -- sh -c 'mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -N -B "$@"' sh ${3:+"$3"} -e "$2"; }

# ---- Hort objects

# usable_secret NS NAME [FROM-LITERAL ARGS...]: a generic Secret (created or updated) that its
# owner marks usable by Hort (label hort.dev/usable=true); Hort refuses unmarked ones.
usable_secret() {
  local ns="$1" name="$2"; shift 2
  kc -n "$ns" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | kc label --local -f - hort.dev/usable=true -o yaml | kc apply -f - >/dev/null
}

# repository_secrets NS S3-ACCESS S3-SECRET: Secrets hort-repository-password (key password) and
# s3-credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), marked usable.
repository_secrets() {
  local ns="$1"
  usable_secret "$ns" hort-repository-password --from-literal=password="e2e-$ns-password"
  usable_secret "$ns" s3-credentials --from-literal=AWS_ACCESS_KEY_ID="$2" --from-literal=AWS_SECRET_ACCESS_KEY="$3"
}

# s3_group NS NAME ENDPOINT BUCKET PREFIX [CREDENTIALS-SECRET]: a StorageGroup with one S3 target.
s3_group() {
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: StorageGroup
metadata: {name: $2}
spec:
  targets:
    - name: s3
      s3:
        endpoint: $3
        bucket: $4
        prefix: $5
        forcePathStyle: true
        credentialsSecretRef: {name: ${6:-s3-credentials}}
  encryption:
    keySecretRef: {name: hort-repository-password}
  checkIntervalSeconds: 60
EOF
}

# shared_group NAME STORAGEGROUP LABEL ROOT-SECRET [REPLICAS]: in Hort's namespace the tenant root
# secret `tenant-root` (key secret) and a ClusterStorageGroup sharing StorageGroup STORAGEGROUP
# of that namespace with the namespaces labelled LABEL=yes, its proxy with REPLICAS pods (1).
shared_group() {
  usable_secret "$HORT_NAMESPACE" tenant-root --from-literal=secret="$4"
  kc apply -f - >/dev/null <<EOF
apiVersion: hort.dev/v1alpha1
kind: ClusterStorageGroup
metadata: {name: $1}
spec:
  storageGroupRef: {name: $2}
  allowedNamespaces: {matchLabels: {$3: "yes"}}
  tenantKeySecretRef: {name: tenant-root, key: secret}
  replicas: ${5:-1}
EOF
}

# pvc_group NS NAME CLAIM: a claim (marked usable) and a StorageGroup with it as the only target.
pvc_group() {
  kc -n "$1" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $3, labels: {hort.dev/usable: "true"}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: hort.dev/v1alpha1
kind: StorageGroup
metadata: {name: $2}
spec:
  targets:
    - name: disk
      pvc: {claimName: $3, subPath: hort}
  encryption:
    keySecretRef: {name: hort-repository-password}
  checkIntervalSeconds: 60
EOF
}

# run_pod NS NAME IMAGE SCRIPT [CLAIM MOUNT]...: a pod running `sh -c SCRIPT` with claims
# mounted; waits until it finished and succeeds if the pod did (its log goes to stdout).
run_pod() {
  local ns="$1" name="$2" image="$3" script="$4" vols="" mounts="" i=0 phase
  shift 4
  while (($# >= 2)); do
    vols+="    - {name: v$i, persistentVolumeClaim: {claimName: $1}}"$'\n'
    mounts+="        - {name: v$i, mountPath: $2}"$'\n'
    i=$((i + 1)); shift 2
  done
  kc -n "$ns" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $image
      imagePullPolicy: IfNotPresent
      command: ["sh", "-c", $(printf '%s' "$script" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
      volumeMounts:
${mounts:-        []}
  volumes:
${vols:-    []}
EOF
  phase="$(wait_pod_done "$ns" "$name" "${RUN_POD_TIMEOUT:-300}")" || { kc -n "$ns" logs "$name" 2>/dev/null; return 1; }
  kc -n "$ns" logs "$name"
  [[ "$phase" == Succeeded ]]
}

# agent_cmd NS NAME REPOSITORY AGENT-ARGS...: runs hort-agent in a pod against a repository
# (an s3:// location with the credentials in Secret s3-credentials, or a path on claim
# $AGENT_CLAIM mounted at /targets/disk) with the password from Secret hort-repository-password
# (or $AGENT_PASSWORD_SECRET); prints its stdout.
agent_cmd() {
  local ns="$1" name="$2" repo="$3" vols="[]" mounts="[]"; shift 3
  if [[ -n "${AGENT_CLAIM:-}" ]]; then
    vols="[{name: disk, persistentVolumeClaim: {claimName: $AGENT_CLAIM}}]"
    mounts="[{name: disk, mountPath: /targets/disk}]"
  fi
  kc -n "$ns" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  enableServiceLinks: false
  containers:
    - name: agent
      image: $HORT_AGENT_IMAGE
      imagePullPolicy: Never
      args: $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")
      env:
        - {name: HORT_REPOSITORY, value: "$repo"}
        - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
        - {name: HORT_PASSWORD, valueFrom: {secretKeyRef: {name: ${AGENT_PASSWORD_SECRET:-hort-repository-password}, key: password}}}
        - {name: AWS_ACCESS_KEY_ID, valueFrom: {secretKeyRef: {name: s3-credentials, key: AWS_ACCESS_KEY_ID, optional: true}}}
        - {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: s3-credentials, key: AWS_SECRET_ACCESS_KEY, optional: true}}}
      volumeMounts: $mounts
  volumes: $vols
EOF
  local phase
  phase="$(wait_pod_done "$ns" "$name" 300)" || return 1
  kc -n "$ns" logs "$name" -c agent
  [[ "$phase" == Succeeded ]]
}

# ---- diagnostics

# dump_namespace NS: the Hort objects, pods, events and agent logs of a namespace, and the
# operator's recent log.
dump_namespace() {
  local ns="$1" pod
  {
    echo "----- Hort objects in $ns"
    kc -n "$ns" get storagegroups,backupjobs,schedules,restorerequests,volumerestoresources -o yaml 2>&1 | sed -n '1,400p'
    echo "----- pods in $ns"
    kc -n "$ns" get pods -o wide 2>&1
    echo "----- claims and VolumeSnapshots in $ns"
    kc -n "$ns" get pvc,volumesnapshots -o custom-columns='KIND:.kind,NAME:.metadata.name,DELETING:.metadata.deletionTimestamp,FINALIZERS:.metadata.finalizers,STATUS:.status.phase,READY:.status.readyToUse' 2>&1
    echo "----- events in $ns"
    kc -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -n 40
    for pod in $(kc -n "$ns" get pods -l app.kubernetes.io/name=hort-agent -o jsonpath='{.items[*].metadata.name}' 2>/dev/null); do
      echo "----- log of agent pod $ns/$pod"
      kc -n "$ns" logs "$pod" --all-containers --tail=30 2>&1
    done
    echo "----- operator log (last 60 lines)"
    pod="$(operator_pod)"
    [[ -n "$pod" ]] && kc -n "$HORT_NAMESPACE" logs "$pod" --tail=60 2>&1
    echo "-----"
  } 2>&1 | cut -c1-400 | sed 's/^/    | /' >&2
}
