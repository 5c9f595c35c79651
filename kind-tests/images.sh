#!/usr/bin/env bash
# Container images for the local cluster, built without a registry or a Docker engine.
#
#   kind-tests/images.sh infra          pause, busybox, CoreDNS, local-path-provisioner images
#                                       (from the binaries of build.sh and Debian's busybox-static)
#   kind-tests/images.sh base           Debian bookworm base from debootstrap, tagged as the base
#                                       the Dockerfiles name (docker.io/library/debian:bookworm-slim)
#   kind-tests/images.sh build [NAME..] build Dockerfiles (kind-tests/images/*/Dockerfile, and
#                                       agent/Dockerfile, operator/Dockerfile when present) with buildah
#   kind-tests/images.sh import [NAME..] import built images into the running cluster's containerd
#   kind-tests/images.sh all            base + build + import
#
# Image archives (docker-archive) are cached in ~/.cache/hort/images/NAME.tar, with NAME.tar.name
# holding the image reference. Podman's storage lives in ~/.cache/hort/podman.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

CACHE="${HORT_CACHE:-$HOME/.cache/hort}"
BIN="$CACHE/bin/$K8S_VERSION"
IMAGES="$CACHE/images"
STATE="${HORT_CLUSTER_DIR:-$CACHE/cluster}"
PODMAN_DIR="$CACHE/podman"
BASE_REF="docker.io/library/debian:bookworm-slim"
DEBIAN_SUITE=bookworm

die() { echo "images.sh: error: $*" >&2; exit 1; }
log() { echo "images.sh: $*" >&2; }

mkdir -p "$IMAGES" "$PODMAN_DIR"

# Podman/buildah settings for this host: runc (crun rejects the hybrid cgroup v1 layout) and
# ulimits it accepts; storage kept in the cache directory.
setup_podman() {
  command -v podman >/dev/null || die "podman is not installed (apt-get install -y podman buildah)"
  cat >"$PODMAN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=30000:30000"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  cat >"$PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_DIR/run"
EOF
  export CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
  export CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"
}

save_image() { # ref name
  local ref="$1" name="$2"
  rm -f "$IMAGES/$name.tar.tmp"
  podman save --format docker-archive -o "$IMAGES/$name.tar.tmp" "$ref" >/dev/null
  mv -f "$IMAGES/$name.tar.tmp" "$IMAGES/$name.tar"
  echo "$ref" >"$IMAGES/$name.tar.name"
  log "saved $ref -> $IMAGES/$name.tar"
}

fresh() { # tar sources...: true if tar exists and is newer than every source
  local t="$1"; shift
  [[ -f "$t" && -f "$t.name" ]] || return 1
  local s; for s in "$@"; do [[ "$t" -nt "$s" ]] || return 1; done
}

# An image from a directory tree: tar + `podman import` (needs no runtime).
rootfs_image() { # name ref rootfs change...
  local name="$1" ref="$2" rootfs="$3"; shift 3
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$rootfs" --numeric-owner -cf "$rootfs.tar" .
  podman import "${changes[@]}" "$rootfs.tar" "$ref" >/dev/null
  rm -f "$rootfs.tar"
  save_image "$ref" "$name"
}

minimal_etc() { # rootfs
  mkdir -p "$1/etc" "$1/tmp"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
  printf 'hosts: files dns\n' >"$1/etc/nsswitch.conf"
}

cmd_infra() {
  setup_podman
  [[ -x "$BIN/pause" && -x "$BIN/coredns" && -x "$BIN/local-path-provisioner" ]] || "$HERE/build.sh" node addons
  local work; work="$(mktemp -d)"

  if ! fresh "$IMAGES/pause.tar" "$BIN/pause"; then
    mkdir -p "$work/pause"; cp "$BIN/pause" "$work/pause/pause"
    rootfs_image pause hort.local/pause:3.10 "$work/pause" 'ENTRYPOINT ["/pause"]'
  fi
  local bb; bb="$(command -v busybox || true)"
  [[ -n "$bb" ]] || die "busybox is not installed (apt-get install -y busybox-static)"
  if ! fresh "$IMAGES/busybox.tar" "$bb"; then
    file -L "$bb" 2>/dev/null | grep -q 'statically linked' || ldd "$bb" 2>&1 | grep -q 'not a dynamic' \
      || die "$bb is not static: apt-get install -y busybox-static"
    local r="$work/busybox" a
    mkdir -p "$r/bin"; cp "$bb" "$r/bin/busybox"
    for a in $("$bb" --list); do [[ "$a" == busybox ]] || ln -sf busybox "$r/bin/$a"; done
    minimal_etc "$r"
    mkdir -p "$r/root" "$r/var/www"
    rootfs_image busybox hort.local/busybox:stable "$r" 'ENV PATH=/bin' 'CMD ["sh"]'
  fi
  if ! fresh "$IMAGES/coredns.tar" "$BIN/coredns"; then
    mkdir -p "$work/coredns"; cp "$BIN/coredns" "$work/coredns/coredns"; minimal_etc "$work/coredns"
    rootfs_image coredns "hort.local/coredns:$COREDNS_VERSION" "$work/coredns" 'ENTRYPOINT ["/coredns"]'
  fi
  if ! fresh "$IMAGES/local-path-provisioner.tar" "$BIN/local-path-provisioner"; then
    mkdir -p "$work/lpp"; cp "$BIN/local-path-provisioner" "$work/lpp/local-path-provisioner"; minimal_etc "$work/lpp"
    rootfs_image local-path-provisioner "hort.local/local-path-provisioner:$LOCAL_PATH_VERSION" "$work/lpp" \
      'ENTRYPOINT ["/local-path-provisioner"]'
  fi
  rm -rf "$work"
}

debian_mirror() {
  # The mirror apt uses for "$DEBIAN_SUITE main" (HORT_DEBIAN_MIRROR overrides).
  if [[ -n "${HORT_DEBIAN_MIRROR:-}" ]]; then echo "$HORT_DEBIAN_MIRROR"; return; fi
  local m="" f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    m="$(sed -E 's/\[[^]]*\]//' "$f" | awk -v s="$DEBIAN_SUITE" '$1 == "deb" && $3 == s {print $2; exit}')"
    [[ -n "$m" ]] && break
  done
  if [[ -z "$m" ]]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f "$f" ]] || continue
      m="$(awk -v RS= -v s="$DEBIAN_SUITE" '
            { uri=""; ok=0; n=split($0, L, "\n")
              for (i=1;i<=n;i++) {
                if (L[i] ~ /^URIs:/) { split(L[i], u, /[ \t]+/); uri=u[2] }
                if (L[i] ~ /^Suites:/) { k=split(L[i], w, /[ \t]+/); for (j=2;j<=k;j++) if (w[j]==s) ok=1 }
              }
              if (ok && uri != "") { print uri; exit } }' "$f")"
      [[ -n "$m" ]] && break
    done
  fi
  [[ -n "$m" ]] || die "cannot find the Debian mirror for $DEBIAN_SUITE in /etc/apt/sources.list*; set HORT_DEBIAN_MIRROR"
  echo "$m"
}

cmd_base() {
  setup_podman
  if podman image exists "$BASE_REF" && [[ -f "$IMAGES/debian-base.tar" ]]; then return 0; fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
  local t0=$SECONDS root="$CACHE/debootstrap-$DEBIAN_SUITE"
  rm -rf "$root"
  log "debootstrap $DEBIAN_SUITE (minbase) from $(debian_mirror)"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$(debian_mirror)" >"$CACHE/logs/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/logs/debootstrap.log" >&2; die "debootstrap failed"; }
  # slim it like the official -slim images: no docs, man pages or apt lists
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  rootfs_image debian-base "$BASE_REF" "$root" 'CMD ["bash"]' 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  rm -rf "$root"
  log "base image $BASE_REF built in $((SECONDS - t0))s"
}

# Dockerfiles: kind-tests/images/NAME/Dockerfile (context: that folder), and the repo's
# agent/Dockerfile and operator/Dockerfile (context: the repo root) when they exist.
list_dockerfiles() {
  local d
  for d in "$HERE"/images/*/Dockerfile; do [[ -f "$d" ]] && echo "$(basename "$(dirname "$d")") $d $(dirname "$d")"; done
  for d in agent operator; do
    [[ -f "$REPO/$d/Dockerfile" ]] && echo "hort-$d $REPO/$d/Dockerfile $REPO"
  done
  return 0
}

cmd_build() {
  setup_podman
  command -v buildah >/dev/null || die "buildah is not installed (apt-get install -y buildah)"
  cmd_base
  local name file ctx want=("$@")
  while read -r name file ctx; do
    [[ -n "$name" ]] || continue
    if ((${#want[@]})) && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then continue; fi
    local ref="hort.local/$name:dev" t0=$SECONDS
    log "building $ref from $file"
    if [[ -x "$(dirname "$file")/prepare.sh" ]]; then
      # the folder's prepare.sh fills a build context (e.g. with a binary built on the host)
      ctx="$CACHE/contexts/$name"
      rm -rf "$ctx"; mkdir -p "$ctx"
      cp -a "$(dirname "$file")/." "$ctx/"
      "$(dirname "$file")/prepare.sh" "$ctx" || die "preparing the build context of $name failed"
      file="$ctx/Dockerfile"
    fi
    buildah bud --pull-never --isolation chroot --network host --layers -f "$file" -t "$ref" "$ctx" \
      >"$CACHE/logs/image-$name.log" 2>&1 \
      || { tail -n 30 "$CACHE/logs/image-$name.log" >&2; die "building $name failed (log: $CACHE/logs/image-$name.log)"; }
    save_image "$ref" "$name"
    log "built $ref in $((SECONDS - t0))s"
  done < <(list_dockerfiles)
}

use_kind() { # same rule as cluster.sh
  [[ "${HORT_NO_KIND:-}" == 1 ]] && return 1
  command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

cmd_import() {
  local sock="$STATE/containerd/containerd.sock"
  use_kind || [[ -S "$sock" ]] || die "the cluster's containerd is not running ($sock): run kind-tests/cluster.sh up"
  local t name names=("$@")
  if ((${#names[@]} == 0)); then
    for t in "$IMAGES"/*.tar; do [[ -f "$t" ]] && names+=("$(basename "$t" .tar)"); done
  fi
  for name in "${names[@]}"; do
    t="$IMAGES/$name.tar"
    [[ -f "$t" ]] || die "no image archive $t (run: kind-tests/images.sh build $name)"
    if use_kind; then
      kind load image-archive "$t" --name hort >/dev/null || die "kind load image-archive $t failed"
    else
      ctr --address "$sock" -n k8s.io images import "$t" >/dev/null || die "importing $t failed"
    fi
    log "imported $(cat "$t.name")"
  done
}

case "${1:-}" in
  infra) cmd_infra ;;
  base) cmd_base ;;
  build) shift; cmd_build "$@" ;;
  import) shift; cmd_import "$@" ;;
  all) shift; cmd_build "$@"; cmd_import ;;
  *) echo "usage: $0 infra | base | build [NAME...] | import [NAME...] | all" >&2; exit 2 ;;
esac
