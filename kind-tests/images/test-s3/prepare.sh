#!/usr/bin/env bash
# Put the s3s-fs binary into the build context DIR (builds it once with cargo, cached in
# ~/.cache/hort/s3s-fs-<version>).
set -euo pipefail
ctx="${1:?usage: prepare.sh CONTEXT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../../build.sh" test-tools
source "$here/../../versions.sh"
cp "${HORT_CACHE:-$HOME/.cache/hort}/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs" "$ctx/s3s-fs"
cp "$here/Dockerfile" "$here/entrypoint.sh" "$ctx/" 2>/dev/null || true
