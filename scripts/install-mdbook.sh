#!/usr/bin/env bash
# Installs mdBook (the crate `mdbook`, pinned, with search and without its web server) into
# ~/.cache/hort/tools/bin and prints its path. A second run only prints the path. The build
# (cargo install) takes a few minutes once; its intermediate files go to a temporary directory.
set -euo pipefail
MDBOOK_VERSION=0.5.4
dest="${HORT_CACHE:-$HOME/.cache/hort}/tools"
bin="$dest/bin/mdbook"
if [[ ! -x "$bin" ]] || [[ "$("$bin" --version)" != "mdbook v$MDBOOK_VERSION" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  CARGO_TARGET_DIR="$work" cargo install --quiet --locked mdbook --version "$MDBOOK_VERSION" \
    --no-default-features --features search --root "$dest" >&2
fi
echo "$bin"
