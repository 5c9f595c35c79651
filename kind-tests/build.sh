#!/usr/bin/env bash
# Build the Kubernetes components Hort's cluster tests need, once, from Go modules.
#
#   kind-tests/build.sh [GROUP...]     GROUP: control-plane | node | addons | csi | all (default: all)
#                                      | test-tools (s3s-fs for the S3 test image, with cargo)
#
# Everything is cached under ${HORT_CACHE:-~/.cache/hort}; nothing is written into the repo.
#   src/<name>-<version>/go.mod   generated wrapper modules
#   bin/<k8s-version>/            the binaries
#   logs/build-*.log              build logs
# A binary that already exists (with the same pinned version) is not rebuilt, so a second run is
# a no-op that takes a fraction of a second.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

CACHE="${HORT_CACHE:-$HOME/.cache/hort}"
BIN="$CACHE/bin/$K8S_VERSION"
SRC="$CACHE/src"
LOGS="$CACHE/logs"
mkdir -p "$BIN" "$SRC" "$LOGS"

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

command -v go >/dev/null || die "go is not installed (need Go >= 1.24)"
# Parallelism: the machine has 2 cores and other builds may run concurrently.
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"
export CGO_ENABLED="${CGO_ENABLED:-0}"

# ---------------------------------------------------------------- helpers
have_all() { local b; for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done; }
# binaries not versioned by the bin/<k8s-version> folder carry a stamp: rebuilt when the pin moves
have_at() { [[ -x "$BIN/$1" && "$(cat "$BIN/.$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { echo "$2" >"$BIN/.$1.version"; }

# Wrapper module for k8s.io/kubernetes: its go.mod requires every staging module at v0.0.0,
# so we replace each one with the published v0.X.Y of the same release.
k8s_wrapper() {
  local dir="$SRC/kubernetes-$K8S_VERSION"
  if [[ -f "$dir/.ready" ]]; then echo "$dir"; return; fi
  mkdir -p "$dir"
  log "preparing wrapper module for k8s.io/kubernetes $K8S_VERSION in $dir"
  local gomod
  gomod="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
            | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  local staging_ver="v0.${K8S_VERSION#v1.}"
  {
    echo "module hort.local/k8s-build"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # every "k8s.io/xxx v0.0.0" requirement is a staging module
    grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk -v v="$staging_ver" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  grep -q '=>' "$dir/go.mod" || die "no staging modules found in $gomod"
  echo "$dir"
  touch "$dir/.ready"
}

# Simple wrapper module for a single Go module that has a main package.
# Further arguments are extra go.mod lines (e.g. a replace the module's own go.mod has, since
# replace directives of a dependency are ignored).
mod_wrapper() {
  local name="$1" module="$2" version="$3"; shift 3
  local dir="$SRC/$name-$version"
  mkdir -p "$dir"
  if [[ ! -f "$dir/go.mod" ]]; then
    { printf 'module hort.local/%s-build\n\ngo 1.24\n\nrequire %s %s\n' "$name" "$module" "$version"
      local l; for l in "$@"; do printf '\n%s\n' "$l"; done; } >"$dir/go.mod"
  fi
  echo "$dir"
}

timed_build() { # name logfile cmd...
  local name="$1" logf="$2"; shift 2
  local t0=$SECONDS
  log "building $name (log: $logf)"
  if ! "$@" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "building $name failed, see $logf"
  fi
  local dt=$((SECONDS - t0))
  log "built $name in ${dt}s"
  echo "$(date -u +%FT%TZ) $name ${dt}s" >>"$LOGS/build-times.txt"
}

k8s_ldflags() {
  local v="${K8S_VERSION#v}" major minor
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  local f="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
    f+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$f"
}

build_k8s() { # binaries...
  local want=() b
  for b in "$@"; do [[ -x "$BIN/$b" ]] || want+=("$b"); done
  [[ ${#want[@]} -eq 0 ]] && return 0
  local dir; dir="$(k8s_wrapper)"
  local pkgs=()
  for b in "${want[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  local tmp="$BIN/.tmp.$$"; mkdir -p "$tmp"
  timed_build "${want[*]}" "$LOGS/build-k8s-$K8S_VERSION-${want[0]}.log" \
    bash -c 'cd "$1" && shift && tmp="$1" && shift && ld="$1" && shift &&
             go build -mod=mod -ldflags "$ld" -o "$tmp/" "$@"' _ "$dir" "$tmp" "$(k8s_ldflags)" "${pkgs[@]}"
  for b in "${want[@]}"; do mv -f "$tmp/$b" "$BIN/$b"; done
  rmdir "$tmp"
}

build_etcd() {
  have_at etcd "$ETCD_VERSION" && return 0
  local dir; dir="$(mod_wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")"
  timed_build etcd "$LOGS/build-etcd.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w" -o "$2.tmp" go.etcd.io/etcd/server/v3 && mv -f "$2.tmp" "$2"' _ "$dir" "$BIN/etcd"
  stamp etcd "$ETCD_VERSION"
}

build_coredns() {
  have_at coredns "$COREDNS_VERSION" && return 0
  local dir; dir="$(mod_wrapper coredns github.com/coredns/coredns "$COREDNS_VERSION")"
  timed_build coredns "$LOGS/build-coredns.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w" -o "$2.tmp" github.com/coredns/coredns && mv -f "$2.tmp" "$2"' _ "$dir" "$BIN/coredns"
  stamp coredns "$COREDNS_VERSION"
}

build_helm() {
  have_at helm "$HELM_VERSION" && return 0
  local dir; dir="$(mod_wrapper helm helm.sh/helm/v3 "$HELM_VERSION")"
  timed_build helm "$LOGS/build-helm.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$3" -o "$2.tmp" helm.sh/helm/v3/cmd/helm && mv -f "$2.tmp" "$2"' _ "$dir" "$BIN/helm" "$HELM_VERSION"
  stamp helm "$HELM_VERSION"
}

build_local_path() {
  have_at local-path-provisioner "$LOCAL_PATH_VERSION" && return 0
  local dir; dir="$(mod_wrapper local-path github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION")"
  timed_build local-path-provisioner "$LOGS/build-local-path.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w" -o "$2.tmp" github.com/rancher/local-path-provisioner && mv -f "$2.tmp" "$2"' _ "$dir" "$BIN/local-path-provisioner"
  stamp local-path-provisioner "$LOCAL_PATH_VERSION"
}

module_dir() { # module version: the directory of its source (downloaded if needed)
  (cd "$SRC" && GOFLAGS=-mod=mod go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
}

# The snapshot CRDs (VolumeSnapshot*, VolumeGroupSnapshot*) of external-snapshotter's client
# module, copied to crds/external-snapshotter-<version>/ (cluster.sh applies them).
fetch_snapshot_crds() {
  local out="$CACHE/crds/external-snapshotter-$SNAPSHOTTER_VERSION"
  [[ -f "$out/.ready" ]] && return 0
  local mod=github.com/kubernetes-csi/external-snapshotter/client/v8 dir
  dir="$(module_dir "$mod" "$SNAPSHOTTER_VERSION")"
  [[ -d "$dir/config/crd" ]] || die "could not download $mod@$SNAPSHOTTER_VERSION (or it has no config/crd)"
  mkdir -p "$out"
  cp "$dir"/config/crd/*storage.k8s.io_*.yaml "$out/"
  chmod 644 "$out"/*.yaml
  touch "$out/.ready"
  log "snapshot CRDs $SNAPSHOTTER_VERSION in $out"
}

# external-snapshotter's go.mod replaces its client module with ./client (the same release);
# the wrapper module pins the published client module of that release instead.
build_snapshotter() { # binary: snapshot-controller | csi-snapshotter
  local b="$1" mod=github.com/kubernetes-csi/external-snapshotter
  have_at "$b" "$SNAPSHOTTER_VERSION" && return 0
  local dir; dir="$(mod_wrapper external-snapshotter "$mod/v8" "$SNAPSHOTTER_VERSION" \
    "replace $mod/client/v8 => $mod/client/v8 $SNAPSHOTTER_VERSION")"
  timed_build "$b" "$LOGS/build-$b.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w -X main.version=$3" -o "$2.tmp" "$4" && mv -f "$2.tmp" "$2"' \
    _ "$dir" "$BIN/$b" "$SNAPSHOTTER_VERSION" "$mod/v8/cmd/$b"
  stamp "$b" "$SNAPSHOTTER_VERSION"
}

build_provisioner() {
  have_at csi-provisioner "$PROVISIONER_VERSION" && return 0
  local mod=github.com/kubernetes-csi/external-provisioner/v5
  local dir; dir="$(mod_wrapper external-provisioner "$mod" "$PROVISIONER_VERSION")"
  timed_build csi-provisioner "$LOGS/build-csi-provisioner.log" \
    bash -c 'cd "$1" && go build -mod=mod -ldflags "-s -w -X main.version=$3" -o "$2.tmp" "$4" && mv -f "$2.tmp" "$2"' \
    _ "$dir" "$BIN/csi-provisioner" "$PROVISIONER_VERSION" "$mod/cmd/csi-provisioner"
  stamp csi-provisioner "$PROVISIONER_VERSION"
}

# The RBAC that upstream's deploy manifests give the three sidecars (cluster.sh applies their
# ClusterRoles), from the same module releases.
fetch_csi_rbac() {
  local out="$CACHE/csi-rbac/snapshotter-$SNAPSHOTTER_VERSION-provisioner-$PROVISIONER_VERSION"
  [[ -f "$out/.ready" ]] && return 0
  local snap prov
  snap="$(module_dir github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION")"
  prov="$(module_dir github.com/kubernetes-csi/external-provisioner/v5 "$PROVISIONER_VERSION")"
  mkdir -p "$out"
  cp "$snap/deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml" \
     "$snap/deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml" "$out/" \
    && cp "$prov/deploy/kubernetes/rbac.yaml" "$out/rbac-csi-provisioner.yaml" \
    || die "upstream RBAC manifests not found in $snap or $prov"
  chmod 644 "$out"/*.yaml
  touch "$out/.ready"
}


# Our test-only CSI driver (kind-tests/csi-driver): rebuilt when its sources change.
build_csi_driver() {
  local src="$HERE/csi-driver" sum
  sum="$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
  have_at hort-csi-driver "$sum" && return 0
  timed_build hort-csi-driver "$LOGS/build-hort-csi-driver.log" \
    bash -c 'cd "$1" && go build -ldflags "-s -w" -o "$2.tmp" . && mv -f "$2.tmp" "$2"' _ "$src" "$BIN/hort-csi-driver"
  stamp hort-csi-driver "$sum"
}

build_pause() {
  have_all pause && return 0
  command -v gcc >/dev/null || die "gcc is needed for the pause binary"
  local t0=$SECONDS
  gcc -Os -static -Wall -Werror -o "$BIN/pause.tmp" "$HERE/pause/pause.c" \
    || die "compiling pause failed (is libc6-dev installed?)"
  strip "$BIN/pause.tmp" && mv -f "$BIN/pause.tmp" "$BIN/pause"
  echo "$(date -u +%FT%TZ) pause $((SECONDS - t0))s" >>"$LOGS/build-times.txt"
}

build_s3s_fs() {
  local root="$CACHE/s3s-fs-$S3S_FS_VERSION"
  [[ -x "$root/bin/s3s-fs" ]] && return 0
  command -v cargo >/dev/null || die "cargo is needed to build s3s-fs"
  timed_build s3s-fs "$LOGS/build-s3s-fs.log" \
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --root "$root" -j 2
}

# ---------------------------------------------------------------- groups
CONTROL_PLANE=(kube-apiserver kube-controller-manager kubectl)
NODE=(kube-scheduler kubelet kube-proxy)

group_control_plane() { build_etcd; build_k8s "${CONTROL_PLANE[@]}"; fetch_snapshot_crds; }
group_node() { build_k8s "${NODE[@]}"; build_pause; }
group_addons() { build_coredns; build_local_path; build_helm; }
group_csi() { build_snapshotter snapshot-controller; build_snapshotter csi-snapshotter; build_provisioner; build_csi_driver; fetch_csi_rbac; }

groups=("$@"); [[ ${#groups[@]} -eq 0 ]] && groups=(all)
# one build at a time (cluster.sh and images.sh may call this too)
exec 9>"$CACHE/build.lock"
flock -w 3600 9 || die "another build.sh holds $CACHE/build.lock"
t_start=$SECONDS
for g in "${groups[@]}"; do
  case "$g" in
    control-plane) group_control_plane ;;
    node) group_node ;;
    addons) group_addons ;;
    test-tools) build_s3s_fs ;;
    csi) group_csi ;;
    all) group_control_plane; group_node; group_addons; group_csi ;;
    *) die "unknown group '$g' (control-plane | node | addons | csi | all | test-tools)" ;;
  esac
done
log "binaries in $BIN (total ${SECONDS}s this run, $((SECONDS - t_start))s building)"
