#!/usr/bin/env bash
# Installs the S3 test server used by the agent's integration tests: s3s-fs (Apache-2.0,
# real SigV4 checks, objects stored as files) from the Rust crate registry, into a cache
# directory outside the repository. Idempotent: does nothing when the binary is present.
# Prints the path of the binary on stdout.
set -euo pipefail
VERSION=0.14.1
ROOT="${HORT_S3S_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/s3s-fs-$VERSION}"
BIN="$ROOT/bin/s3s-fs"
if [[ ! -x "$BIN" ]]; then
    mkdir -p "$ROOT"
    # A separate target dir so this build never contends with the workspace's lock.
    CARGO_TARGET_DIR="$ROOT/target" cargo install s3s-fs --version "$VERSION" \
        --features binary --locked --root "$ROOT" >&2
    rm -rf "$ROOT/target"
fi
echo "$BIN"
