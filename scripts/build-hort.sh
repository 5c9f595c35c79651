#!/usr/bin/env bash
# Builds hort-agent and hort-operator (cargo, release) for their images, the same way for every
# caller (scripts/quickstart.sh, scripts/test.sh): in Hort's one cargo target directory
# (CARGO_TARGET_DIR, default ~/.cache/hort/cargo-target, outside the repository and shared by
# clones and worktrees) with the same settings, so whichever runs second finds them built.
# Then copies both binaries to target/release of the repository, where agent/Dockerfile and
# operator/Dockerfile take them from the build context.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hort/cargo-target}"
# The settings scripts/test.sh builds with: a different value would build everything again.
export CARGO_INCREMENTAL=0
cargo build --release --locked -p hort-agent -p hort-operator
if [[ "$(realpath -m "$CARGO_TARGET_DIR")" != "$(realpath -m target)" ]]; then
  mkdir -p target/release
  cp "$CARGO_TARGET_DIR/release/hort-agent" "$CARGO_TARGET_DIR/release/hort-operator" target/release/
fi
