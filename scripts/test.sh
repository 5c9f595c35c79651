#!/usr/bin/env bash
# Runs every Hort test on this machine: formatting, lints, unit and integration tests, and the
# tests that need a real kube-apiserver (built from upstream and started by kind-tests/).
# Everything the tests need is installed by the scripts this one calls; downloads and builds
# are cached under ~/.cache/hort, so a second run is fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
export CARGO_TERM_COLOR=never RUST_BACKTRACE=0
# Compiled dependencies are kept between runs (and between clones) outside the repository.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hort/cargo-target}"
# Incremental state (about 6 GB here) buys a test run nothing: its sources change every time.
export CARGO_INCREMENTAL=0

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
# ... and the overview's browser test that only kind-tests/e2e.sh runs (a feature of its own).
cargo clippy -p hort-operator --features e2e-browser --tests --locked -- -D warnings

step "test tools"
HORT_PROMTOOL="$(scripts/install-promtool.sh)"
export HORT_PROMTOOL
# The generators of docs/reference/ and of the chart's README read YAML.
python3 -c 'import yaml' 2>/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
MDBOOK="$(scripts/install-mdbook.sh)"

step "book (docs/): the API reference is current and the book builds"
python3 scripts/api-reference.py --check
"$MDBOOK" build docs

step "kube-apiserver and etcd"
# A fresh control plane without a node: the operator tests simulate the kubelet by patching pod
# status, which a real kubelet would overwrite. Objects left by earlier runs go with `down`.
cleanup() {
  scripts/db-servers.sh stop >/dev/null 2>&1 || true
  kind-tests/cluster.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
kind-tests/cluster.sh down
kind-tests/cluster.sh up --control-plane-only
KUBECONFIG="$(kind-tests/cluster.sh kubeconfig)"
export KUBECONFIG

step "helm chart"
kind-tests/build.sh addons
HELM="$HOME/.cache/hort/bin/$(. kind-tests/versions.sh && echo "$K8S_VERSION")/helm"
KUBECTL="$(dirname "$HELM")/kubectl"
"$HELM" lint --strict charts/hort 2>&1 | grep -v "found symbolic link"
# Every object the chart renders is accepted by the API server (schema, RBAC rules).
"$KUBECTL" create namespace hort-system --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$HELM" template hort charts/hort --namespace hort-system --include-crds \
  | "$KUBECTL" apply --dry-run=server --validate=strict -f - >/dev/null
# The namespaced install (operator.watchNamespace) renders Roles only, no ClusterRole or
# ClusterRoleBinding, and is accepted too; asking it to install CRDs fails with a message.
NS_VALUES=(--set operator.watchNamespace=hort-apps --set operator.installCRDs=false)
"$HELM" lint --strict charts/hort "${NS_VALUES[@]}" 2>&1 | grep -v "found symbolic link"
NS_RENDER="$("$HELM" template hort charts/hort --namespace hort-system "${NS_VALUES[@]}")"
cargo run --quiet --locked -p hort-rbac-audit -- no-cluster-rbac - <<<"$NS_RENDER"
"$KUBECTL" create namespace hort-apps --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" apply --dry-run=server --validate=strict -f - <<<"$NS_RENDER" >/dev/null
if NS_ERROR="$("$HELM" template hort charts/hort --set operator.watchNamespace=hort-apps 2>&1)"; then
  echo "the chart rendered operator.watchNamespace with installCRDs=true" >&2; exit 1
fi
grep -q "set operator.installCRDs=false" <<<"$NS_ERROR" || { echo "unexpected error: $NS_ERROR" >&2; exit 1; }
# The values schema, the example values files, the generated chart README and Artifact Hub
# annotations, NOTES.txt per install mode, and the users' aggregated roles on the API server.
HELM="$HELM" KUBECTL="$KUBECTL" scripts/chart-test.sh

step "database servers"
scripts/db-servers.sh start
eval "$(scripts/db-servers.sh env)"

step "tests"
# The overview page's browser test (operator/tests/overview.rs) drives Debian's chromium.
scripts/install-chromium.sh
# --include-ignored runs the tests marked as needing the API server or the database servers
# started above.
cargo test --workspace --locked -- --include-ignored

step "local cluster: node, test images, smoke tests"
kind-tests/cluster.sh up
kind-tests/images.sh build test-postgres test-mariadb test-s3
kind-tests/smoke.sh --images

step "hort-agent and hort-operator images, end-to-end tests"
# Real agent pods: the chart installed with these images, S3/PostgreSQL/MariaDB in the cluster
# (kind-tests/README.md lists the cases).
# Built as the quick start builds them (scripts/build-hort.sh): after it, nothing to compile.
# kubectl-hort too: the e2e case `plugin` runs it against the cluster.
scripts/build-hort.sh
kind-tests/images.sh build hort-agent hort-operator
kind-tests/e2e.sh

step "disaster-recovery drill: the cluster torn down, Hort and the data rebuilt from S3 alone"
kind-tests/dr-drill.sh
