#!/usr/bin/env bash
# Measures dedup of a repeated dump series per average chunk size (see chunk-sizes/src/main.rs).
set -euo pipefail
cd "$(dirname "$0")/chunk-sizes"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench-target}" cargo run --release --quiet
