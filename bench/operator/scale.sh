#!/usr/bin/env bash
# Operator scale check: N Schedules and M BackupJobs in a real kube-apiserver; measures the
# operator's peak memory (RSS) and how long it takes to reconcile every object once (every
# BackupJob has a status written by the operator).
#
#   bench/operator/scale.sh [SCHEDULES] [JOBS]      (defaults: 1000 5000)
#
# Starts its own control plane (kind-tests/cluster.sh, separate state dir and ports), builds
# the operator in release mode, and prints a results table. Nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
export AWS_EC2_METADATA_DISABLED=true
schedules="${1:-1000}"
jobs="${2:-5000}"
export HORT_CLUSTER_DIR="${HORT_SCALE_CLUSTER_DIR:-/tmp/hort-scale-cluster}"
export HORT_APISERVER_PORT=26443 HORT_ETCD_PORT=32379
# A fresh control plane, removed again at the end.
kind-tests/cluster.sh down >/dev/null 2>&1 || true
kind-tests/cluster.sh up --control-plane-only >/dev/null
export KUBECONFIG="$HORT_CLUSTER_DIR/admin.kubeconfig"
kubectl="$HOME/.cache/hort/bin/$(. kind-tests/versions.sh && echo "$K8S_VERSION")/kubectl"
cargo build --release -q -p hort-operator
operator="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-operator"
ns=scale
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" apply --server-side -f crds/ >/dev/null

echo "creating $schedules Schedules and $jobs BackupJobs..."
gen() {
  python3 - "$schedules" "$jobs" <<'PY'
import sys
s, j = int(sys.argv[1]), int(sys.argv[2])
for i in range(s):
    print(f"""---
apiVersion: hort.dev/v1alpha1
kind: Schedule
metadata: {{name: sched-{i}}}
spec:
  schedule: "@yearly"
  suspend: true
  jobTemplate: {{spec: {{storageGroupRef: {{name: group}}, source: {{volume: {{claimName: data-{i}}}}}}}}}""")
for i in range(j):
    print(f"""---
apiVersion: hort.dev/v1alpha1
kind: BackupJob
metadata: {{name: job-{i}}}
spec: {{storageGroupRef: {{name: group}}, source: {{volume: {{claimName: data-{i}}}}}}}""")
PY
}
work="$(mktemp -d)"
gen | python3 -c '
import sys
docs = sys.stdin.read().split("---\n")[1:]
for i in range(0, len(docs), 100):
    open(f"{sys.argv[1]}/{i // 100:04d}.yaml", "w").write("---\n" + "---\n".join(docs[i:i + 100]))
' "$work"
t0=$(date +%s.%N)
for f in "$work"/*.yaml; do
  # An API server busy with thousands of new objects may answer a timeout: try again.
  for try in $(seq 10); do
    "$kubectl" apply -n "$ns" --server-side -f "$f" >/dev/null 2>"$work/err" && break
    echo "apply $(basename "$f") (try $try): $(tail -1 "$work/err")" >&2
    [[ $try == 10 ]] && exit 1
    sleep 5
  done
done
t1=$(date +%s.%N)
rm -rf "$work"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Status writes are counted from a watch started before the operator: listing 50,000 objects
# every few seconds would load the API server more than the operator does.
phases="$(mktemp)"
"$kubectl" get backupjobs -n "$ns" --watch-only \
  -o jsonpath='{.metadata.name}{" "}{.status.phase}{"\n"}' >"$phases" 2>/dev/null &
watcher=$!
sleep 2
start=$(date +%s.%N)
"$operator" --watch-namespace "$ns" --no-leader-election --skip-crd-install \
  --metrics-address "127.0.0.1:$port" >/tmp/hort-scale-operator.log 2>&1 &
pid=$!
trap 'kill $pid $watcher 2>/dev/null || true; rm -f "$phases"; kind-tests/cluster.sh down >/dev/null 2>&1 || true' EXIT
peak=0
while :; do
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  (( rss > peak )) && peak=$rss
  done_jobs=$(awk 'NF == 2 {print $1}' "$phases" | sort -u | wc -l)
  if (( done_jobs >= jobs )); then break; fi
  if ! kill -0 $watcher 2>/dev/null; then
    # The API server ended the watch (after 30 min at the earliest): count with a list.
    done_jobs=$("$kubectl" get backupjobs -n "$ns" -o jsonpath='{range .items[?(@.status.phase)]}x{end}' | wc -c)
    if (( done_jobs >= jobs )); then break; fi
  fi
  if (( $(date +%s) - ${start%.*} > 3600 )); then echo "timed out after 60 min ($done_jobs/$jobs jobs reconciled)" >&2; exit 1; fi
  sleep 5
done
end=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
(( rss > peak )) && peak=$rss
sleep 5
steady=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
p() { python3 -c "print(f'{$1:.1f}')"; }
count=$(echo "$metrics" | awk '/^hort_reconcile_duration_seconds_count\{kind="BackupJob"\}/ {print $2}')
sum=$(echo "$metrics" | awk '/^hort_reconcile_duration_seconds_sum\{kind="BackupJob"\}/ {print $2}')

cat <<EOF2

## Operator scale check ($(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, Kubernetes $(. kind-tests/versions.sh && echo "$K8S_VERSION"))

| measure | value |
|---|---|
| objects | $schedules Schedules, $jobs BackupJobs |
| creating them (kubectl apply --server-side) | $(p "$t1 - $t0") s |
| operator start until every BackupJob has a status | $(p "$end - $start") s |
| BackupJob reconciles, mean duration | $(python3 -c "print(f'{1000*$sum/$count:.1f} ms' if $count else 'n/a')") over ${count:-0} |
| operator peak RSS | $((peak / 1024)) MiB |
| operator RSS after settling | $((steady / 1024)) MiB |
EOF2
