#!/usr/bin/env bash
# Installs the S3 server that enforces Object Lock in the agent's Object Lock tests: Versity
# Gateway (Apache-2.0, Go), built from its Go module into a cache directory outside the
# repository. Idempotent: does nothing when the binary is present. Needs Go (1.26 tested).
# Prints the path of the binary on stdout.
set -euo pipefail
VERSION=v1.8.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hort"
ROOT="${HORT_VERSITYGW_ROOT:-$CACHE/versitygw-$VERSION}"
BIN="$ROOT/bin/versitygw"
if [[ ! -x "$BIN" ]]; then
    mkdir -p "$ROOT/bin"
    # Module and build caches stay under the cache directory too.
    GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build-cache" \
        GOFLAGS=-mod=mod GOBIN="$ROOT/bin" \
        go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
fi
echo "$BIN"
