#!/usr/bin/env bash
# Builds the release archive of the kubectl plugin and its krew manifest:
#   dist/kubectl-hort-v<version>-linux-amd64.tar.gz   (kubectl-hort, LICENSE)
#   dist/kubectl-hort-v<version>-linux-amd64.tar.gz.sha256
#   dist/hort.yaml                                     (plugin/krew/hort.yaml rendered)
#
#   scripts/release-plugin.sh [--base-url URL]
#
# URL is where the archive will be downloaded from (default: the workspace's repository URL
# followed by /releases/download/v<version>). The archive is reproducible: entries sorted, owned
# by 0:0, dated by the last commit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hort/cargo-target}"
export CARGO_INCREMENTAL=0

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
repository="$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
base_url="$repository/releases/download/v$version"
while (($#)); do
  case "$1" in
    --base-url) base_url="${2:?--base-url needs a URL}"; shift 2 ;;
    *) echo "usage: $0 [--base-url URL]" >&2; exit 2 ;;
  esac
done
[[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] || { echo "builds the linux/amd64 archive only: run it on Linux x86_64" >&2; exit 1; }

cargo build --release --locked -p kubectl-hort
# Where cargo put it (its own answer, whatever sets the target directory).
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
name="kubectl-hort-v$version-linux-amd64"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$target_dir/release/kubectl-hort" "$stage/kubectl-hort"
install -m 0644 LICENSE "$stage/LICENSE"
mkdir -p dist
epoch="$(git log -1 --format=%ct)"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - kubectl-hort LICENSE \
  | gzip -9n >"dist/$name.tar.gz"
sha="$(sha256sum "dist/$name.tar.gz" | cut -d' ' -f1)"
echo "$sha  $name.tar.gz" >"dist/$name.tar.gz.sha256"
sed -e "s|@VERSION@|$version|" -e "s|@HOMEPAGE@|$repository|" -e "s|@URI@|$base_url/$name.tar.gz|" -e "s|@SHA256@|$sha|" \
  plugin/krew/hort.yaml >dist/hort.yaml
if grep -q '@[A-Z0-9]*@' dist/hort.yaml; then echo "dist/hort.yaml: a placeholder is left" >&2; exit 1; fi
echo "dist/$name.tar.gz ($(stat -c %s "dist/$name.tar.gz") bytes, sha256 $sha)"
echo "dist/hort.yaml (krew manifest)"
