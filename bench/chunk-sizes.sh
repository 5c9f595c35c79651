#!/usr/bin/env bash
# Measures dedup per FastCDC chunk size (see chunk-sizes/src/main.rs):
#   bench/chunk-sizes.sh              a synthetic repeated dump series, per average size
#   bench/chunk-sizes.sh OLD NEW...   real dump files (oldest first), per average size and
#                                     normalization level: mean chunk and new bytes per file
set -euo pipefail
files=()
for f in "$@"; do files+=("$(realpath "$f")"); done
cd "$(dirname "$0")/chunk-sizes"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench-target}" cargo run --release --quiet -- "${files[@]}"
