#!/usr/bin/env bash
# Builds hort-agent, hort-store (the proxy, in the agent image), hort-operator and kubectl-hort
# (cargo, release) for the images and the e2e tests, the same way for every caller
# (scripts/quickstart.sh, scripts/test.sh): in Hort's one cargo target directory
# (CARGO_TARGET_DIR, default ~/.cache/hort/cargo-target, outside the repository) with the same
# settings, so whichever runs second finds them built. Clones may share it (a fresh clone's
# sources are newer than any artifact there); git worktrees built in turn may not: cargo names
# the artifacts of path crates by their path in the workspace, so each would take the other's as
# fresh. Then copies the binaries to target/release of the repository, where agent/Dockerfile
# and operator/Dockerfile take them from the build context.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hort/cargo-target}"
# The settings scripts/test.sh builds with: a different value would build everything again.
export CARGO_INCREMENTAL=0
cargo build --release --locked -p hort-agent -p hort-store -p hort-operator -p kubectl-hort
if [[ "$(realpath -m "$CARGO_TARGET_DIR")" != "$(realpath -m target)" ]]; then
  mkdir -p target/release
  cp "$CARGO_TARGET_DIR/release/hort-agent" "$CARGO_TARGET_DIR/release/hort-store" \
    "$CARGO_TARGET_DIR/release/hort-operator" "$CARGO_TARGET_DIR/release/kubectl-hort" target/release/
fi
