#!/usr/bin/env bash
# Tests of Hort's Helm chart (charts/hort) beyond `helm lint`; scripts/test.sh runs them against
# its control plane. Each check prints one line; the first failure ends the script.
#
#   KUBECONFIG=… scripts/chart-test.sh
#
# - values.schema.json: a misspelled key, a wrong type, a value outside its enum or range fail
#   `helm template` with the key's path; the defaults and every values file in
#   charts/hort/ci/ pass `helm lint --strict`;
# - the README's values table and Chart.yaml's Artifact Hub annotations are current
#   (scripts/chart-docs.py --check);
# - rbac.aggregatedRoles renders the users' ClusterRoles or not, per value and install mode;
#   tests.enabled without the metrics Service fails and says what to set; NOTES.txt tells the
#   next steps of each mode;
# - on the API server: the users' ClusterRoles are aggregated into view, edit and admin; a user
#   bound to `view` in a namespace may read Hort's objects there and not write them, `edit` and
#   `admin` may write them, nobody may write their status, nothing reaches another namespace,
#   and none of them reaches ClusterStorageGroups.
#   Needs a control plane whose cluster-wide objects a test may create (the one scripts/test.sh
#   starts, or kind-tests/cluster.sh up --control-plane-only); what it creates is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=kind-tests/versions.sh
source kind-tests/versions.sh
BIN="${HORT_CACHE:-$HOME/.cache/hort}/bin/$K8S_VERSION"
HELM="${HELM:-$BIN/helm}"
KUBECTL="${KUBECTL:-$BIN/kubectl}"
CHART=charts/hort
: "${KUBECONFIG:?set KUBECONFIG to a test control plane (kind-tests/cluster.sh kubeconfig)}"

fail() { echo "FAIL $*" >&2; exit 1; }
pass() { echo "ok   $*"; }
helm_quiet() { "$HELM" "$@" 2>&1 | { grep -v "found symbolic link" || true; }; return "${PIPESTATUS[0]}"; }
# rejects WHAT NEEDLE HELM-TEMPLATE-ARGS...: rendering fails with an error that contains NEEDLE.
rejects() {
  local what="$1" needle="$2" out; shift 2
  if out="$(helm_quiet template hort "$CHART" "$@")"; then fail "$what: rendered"; fi
  grep -qF -- "$needle" <<<"$out" || fail "$what: the error does not name '$needle': $out"
  pass "$what: $(grep -F -- "$needle" <<<"$out" | head -1 | sed 's/^ *//')"
}
# renders ARGS...: the objects `helm template` renders (Kind/name, one a line).
renders() {
  helm_quiet template hort "$CHART" --namespace hort-system "$@" \
    | awk '/^kind: /{k=$2} /^  name: /{if (k) print k "/" $2; k=""}'
}
# notes ARGS...: the NOTES Helm prints after `helm install` with ARGS (client-side dry run).
notes() {
  helm_quiet install hort "$CHART" --namespace hort-system --dry-run=client "$@" | sed -n '/^NOTES:/,$p'
}
says() { # WHAT TEXT NEEDLE...: TEXT holds every NEEDLE
  local what="$1" text="$2" needle; shift 2
  for needle in "$@"; do grep -qF -- "$needle" <<<"$text" || fail "$what: no '$needle' in: $text"; done
  pass "$what"
}

# ---- values.schema.json
rejects "misspelled key" "additional properties 'replica' not allowed" --set operator.replica=2
rejects "misspelled section" "additional properties 'metric' not allowed" --set metric.port=9090
rejects "misspelled key in a values file" "at '/metrics/serviceMonitor': additional properties 'intervall'" \
  -f <(printf 'metrics:\n  serviceMonitor:\n    intervall: 1m\n')
rejects "wrong type" "at '/tests/enabled': got string, want boolean" --set tests.enabled=yes
rejects "value outside the enum" "at '/operator/logFormat': value must be one of" --set operator.logFormat=xml
rejects "value outside the range" "at '/operator/maxConcurrentReconciles': minimum" --set operator.maxConcurrentReconciles=0
rejects "value outside the range" "at '/operator/maxJobsPerNode': minimum" --set operator.maxJobsPerNode=-1
says "operator.maxJobsPerNode reaches the operator" "$(helm_quiet template hort "$CHART" --set operator.maxJobsPerNode=3)" \
  "name: HORT_MAX_JOBS_PER_NODE" 'value: "3"'
! grep -q HORT_MAX_JOBS_PER_NODE <<<"$(helm_quiet template hort "$CHART")" || fail "maxJobsPerNode 0 must set no limit"
pass "operator.maxJobsPerNode 0 sets no limit"
rejects "not a quantity" "at '/agent/resources/limits/memory'" --set agent.resources.limits.memory=lots
rejects "not a namespace name" "at '/operator/watchNamespace'" --set operator.watchNamespace=Team_A
rejects "misspelled overview key" "at '/overview': additional properties 'enable' not allowed" --set overview.enable=true
rejects "rbac.aggregatedRoles neither auto nor a boolean" "at '/rbac/aggregatedRoles'" --set rbac.aggregatedRoles=maybe
for values in "$CHART"/ci/*.yaml; do
  helm_quiet lint --strict "$CHART" -f "$values" >/dev/null || fail "helm lint --strict -f $values: $(helm_quiet lint --strict "$CHART" -f "$values")"
  helm_quiet template hort "$CHART" -f "$values" >/dev/null || fail "helm template -f $values"
  pass "values file $values renders and lints"
done

# ---- generated documentation
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "installing python3-yaml (scripts/chart-docs.py reads YAML)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
fi
python3 scripts/chart-docs.py --check || fail "generated chart documentation"
pass "charts/hort/README.md values and Chart.yaml annotations are current"

# ---- what the values render
NAMESPACED=(--set operator.watchNamespace=team-a --set operator.installCRDs=false)
has() { grep -qx "$1" <<<"$2"; }
R="$(renders)"
if ! { has ClusterRole/hort-view "$R" && has ClusterRole/hort-edit "$R" && has Pod/hort-test-operator "$R"; }; then
  fail "the defaults render no ClusterRoles hort-view and hort-edit or no test pod: $R"
fi
pass "defaults: ClusterRoles hort-view and hort-edit, test pod hort-test-operator"
R="$(renders "${NAMESPACED[@]}")"
! grep -q '^ClusterRole' <<<"$R" || fail "namespaced with aggregatedRoles auto renders cluster objects: $R"
pass "namespaced, aggregatedRoles auto: no ClusterRole"
R="$(renders "${NAMESPACED[@]}" --set rbac.aggregatedRoles=true)"
if ! { has ClusterRole/hort-view "$R" && has ClusterRole/hort-edit "$R"; }; then
  fail "aggregatedRoles=true renders no ClusterRoles: $R"
fi
pass "namespaced, aggregatedRoles true: ClusterRoles hort-view and hort-edit"
R="$(renders --set rbac.aggregatedRoles=false)"
! grep -Eq '^ClusterRole/hort-(view|edit)$' <<<"$R" || fail "aggregatedRoles=false renders them: $R"
pass "aggregatedRoles false: no ClusterRole hort-view or hort-edit"
R="$(renders --set tests.enabled=false)"
! grep -q '^Pod/' <<<"$R" || fail "tests.enabled=false renders a pod: $R"
pass "tests.enabled false: no test pod"
rejects "tests without the metrics Service" "set tests.enabled=false too" --set metrics.service.enabled=false
# The proxy of ClusterStorageGroups (templates/store.yaml): its ServiceAccount hort-store may
# review tokens and read groups and Namespaces, in whole-cluster installs only.
STORE="$(helm_quiet template hort "$CHART" --show-only templates/store.yaml)"
for needle in "name: hort-store" "resources: [tokenreviews]" "resources: [clusterstoragegroups]"; do
  grep -qF -- "$needle" <<<"$STORE" || fail "the proxy's RBAC: no '$needle'"
done
! helm_quiet template hort "$CHART" --set operator.watchNamespace=apps --show-only templates/store.yaml >/dev/null 2>&1 \
  || fail "a namespaced install renders the proxy's ClusterRole"
pass "the proxy's ServiceAccount hort-store with tokenreviews create, in whole-cluster installs only"
# The overview page: off by default, and its rights (tokenreviews, subjectaccessreviews) only
# with it (the proxy's own ClusterRole left out).
R="$(helm_quiet template hort "$CHART" | python3 -c 'import sys
docs = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in docs if "# Source: hort/templates/store.yaml" not in d))')"
! grep -Eq 'tokenreviews|subjectaccessreviews|HORT_OVERVIEW_ADDRESS' <<<"$R" || fail "overview off by default, yet rendered"
pass "overview off by default: no address, no tokenreviews or subjectaccessreviews"
R="$(helm_quiet template hort "$CHART" --set overview.enabled=true)"
for needle in "resources: [tokenreviews]" "resources: [subjectaccessreviews]" 'value: "0.0.0.0:8090"' "name: hort-overview"; do
  grep -qF -- "$needle" <<<"$R" || fail "overview.enabled=true: no '$needle'"
done
pass "overview.enabled: the address, its Service, tokenreviews and subjectaccessreviews create"
# The volume populator: off by default; its flag, its rights and the VolumePopulator (only when
# the cluster serves populator.storage.k8s.io/v1beta1) only with it.
R="$(helm_quiet template hort "$CHART")"
! grep -Eq 'HORT_POPULATOR|persistentvolumes\]|resources: \[volumerestoresources\]|kind: VolumePopulator' <<<"$R" \
  || fail "populator off by default, yet rendered"
pass "populator off by default: no flag, no persistentvolumes or volumerestoresources rule, no VolumePopulator"
R="$(helm_quiet template hort "$CHART" --set populator.enabled=true)"
for needle in "name: HORT_POPULATOR" "resources: [persistentvolumes]" "verbs: [get, patch]" \
    "resources: [storageclasses]" "resources: [volumerestoresources]" "resources: [persistentvolumeclaims/finalizers]"; do
  grep -qF -- "$needle" <<<"$R" || fail "populator.enabled=true: no '$needle'"
done
! grep -q 'kind: VolumePopulator' <<<"$R" || fail "populator.enabled=true: a VolumePopulator without its API"
R="$(helm_quiet template hort "$CHART" --set populator.enabled=true --api-versions populator.storage.k8s.io/v1beta1)"
grep -qF "kind: VolumePopulator" <<<"$R" || fail "populator.enabled=true with the API: no VolumePopulator"
R="$(helm_quiet template hort "$CHART" "${NAMESPACED[@]}" --set populator.enabled=true)"
grep -qF "name: hort-populator" <<<"$R" || fail "populator.enabled=true, namespaced: no ClusterRole for persistentvolumes"
pass "populator.enabled: the flag, persistentvolumes get/patch, storageclasses get, volumerestoresources, claim finalizers; a VolumePopulator only when its API is served; the cluster-scoped rules also when namespaced"

says "NOTES, cluster-wide" "$(notes)" \
  "helm test hort -n hort-system" "kubectl hort status" "kubectl apply -n NAMESPACE -f examples/storagegroup-s3.yaml" \
  "hort-view and hort-edit" "port-forward service/hort-metrics 8080"
says "NOTES, namespaced" "$(notes "${NAMESPACED[@]}")" \
  "watches namespace team-a only" "kubectl apply -n team-a -f examples/storagegroup-s3.yaml" \
  "creates no ClusterRole" "kubectl apply --server-side -f charts/hort/crds/"
says "NOTES, minimal" "$(notes -f "$CHART/ci/minimal-values.yaml")" \
  "port-forward deployment/hort-operator 8080" "no aggregated roles (rbac.aggregatedRoles=false)"
! notes -f "$CHART/ci/minimal-values.yaml" | grep -q "helm test" || fail "NOTES name helm test with tests.enabled=false"
pass "NOTES, minimal: no helm test"
says "NOTES, overview" "$(notes --set overview.enabled=true)" \
  "port-forward service/hort-overview 8090" "http://localhost:8090/" "kubectl create token"

# ---- the users' roles on the API server
RELEASE=hort-chart-test
NS_A=hort-chart-test-a
NS_B=hort-chart-test-b
kc() { "$KUBECTL" "$@"; }
cleanup() {
  kc delete namespace "$NS_A" "$NS_B" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kc delete clusterrole "$RELEASE-view" "$RELEASE-edit" --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT
helm_quiet template "$RELEASE" "$CHART" --show-only templates/user-roles.yaml | kc apply -f - >/dev/null
for ns in "$NS_A" "$NS_B"; do kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null; done
for binding in viewer:view editor:edit administrator:admin; do
  kc -n "$NS_A" create rolebinding "${binding%%:*}" --clusterrole "${binding##*:}" --user "${binding%%:*}" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
done
# review USER NAMESPACE VERB RESOURCE[/SUBRESOURCE]...: one SubjectAccessReview per request (a
# line of four fields on stdin), all in one call; prints each request with "true" or "false".
review() {
  local items=() user ns verb resource sub
  while read -r user ns verb resource; do
    sub=""; [[ "$resource" == */* ]] && sub="${resource#*/}"
    items+=("$(printf '{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "%s", "resourceAttributes": {"namespace": "%s", "verb": "%s", "group": "hort.dev", "resource": "%s", "subresource": "%s"}}}' \
      "$user" "$ns" "$verb" "${resource%%/*}" "$sub")")
  done
  local IFS=,
  kc create -f - -o jsonpath='{.spec.user} {.spec.resourceAttributes.namespace} {.spec.resourceAttributes.verb} {.spec.resourceAttributes.resource}{"/"}{.spec.resourceAttributes.subresource} {.status.allowed}{"\n"}' \
    <<<"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [${items[*]}]}" | sed 's|/ | |; s| $| false|'
}
# The aggregation controller copies the rules into view, edit and admin within moments.
for _ in $(seq 60); do
  [[ "$(printf 'editor %s create backupjobs\nviewer %s get backupjobs\n' "$NS_A" "$NS_A" | review)" \
     == *"create backupjobs true"*"get backupjobs true" ]] && break
  sleep 0.5
done
KINDS=(storagegroups backupjobs schedules restorerequests verifications volumerestoresources)
STATUS=(storagegroups/status backupjobs/status schedules/status restorerequests/status verifications/status volumerestoresources/status)
# EXPECTED: lines "USER NAMESPACE VERB RESOURCE ALLOWED".
EXPECTED="$(
  for user in viewer editor administrator; do
    for verb in get list watch; do
      for r in "${KINDS[@]}" "${STATUS[@]}"; do echo "$user $NS_A $verb $r true"; done
    done
    for verb in create update patch delete deletecollection; do
      for r in "${KINDS[@]}"; do echo "$user $NS_A $verb $r $([[ $user == viewer ]] && echo false || echo true)"; done
    done
    for verb in patch update; do
      for r in "${STATUS[@]}"; do echo "$user $NS_A $verb $r false"; done
    done
    for verb in get create; do
      for r in "${KINDS[@]}"; do echo "$user $NS_B $verb $r false"; done
    done
    # A ClusterStorageGroup is for cluster administrators only.
    for verb in get list create patch delete; do echo "$user $NS_A $verb clusterstoragegroups false"; done
  done
)"
GOT="$(cut -d' ' -f1-4 <<<"$EXPECTED" | review)"
if [[ "$GOT" != "$EXPECTED" ]]; then
  diff <(echo "$EXPECTED") <(echo "$GOT") | sed 's/^/    /' >&2
  fail "SubjectAccessReviews differ from what the roles promise (< want, > got)"
fi
pass "$(wc -l <<<"$GOT") SubjectAccessReviews: view, edit and admin in $NS_A get, list, watch Hort's kinds and their status; edit and admin also create, update, patch, delete; view does not; nobody writes status; nothing in $NS_B; no ClusterStorageGroups"
