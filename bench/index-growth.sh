#!/usr/bin/env bash
# Peak RSS and time of a backup into, and a restore from, a repository as its index grows to
# millions of blobs. The blobs beyond the real ones are synthetic (index-growth/: index files
# of random ids in packs that do not exist), so only what the index costs is measured.
#
#   bench/index-growth.sh [WORKDIR] [HORT_AGENT] [BLOB COUNTS...]
#
# WORKDIR (default ~/.cache/hort/index-growth) holds a 256 MiB random file, 64 MiB ones and
# the repository (about 90 bytes of index file a synthetic blob: 1.8 GB at 20 million);
# the repository is removed at the end. HORT_AGENT defaults to a release build of this tree.
# BLOB COUNTS (default 0 1000000 5000000 20000000) are the synthetic blobs in the index at
# each measurement, in growing order. Needs GNU time (/usr/bin/time).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-$HOME/.cache/hort/index-growth}"
HORT="${2:-}"
shift $(( $# < 2 ? $# : 2 ))
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(0 1000000 5000000 20000000)
export HORT_PASSWORD=bench-password AWS_EC2_METADATA_DISABLED=true
mkdir -p "$WORK"
if [[ -z "$HORT" ]]; then
    (cd "$HERE/.." && cargo build --release -p hort-agent >&2)
    HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"
fi
GROW_TARGET="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench-target}"
(cd "$HERE/index-growth" && CARGO_TARGET_DIR="$GROW_TARGET" cargo build --release --quiet >&2)
GROW="$GROW_TARGET/release/hort-index-growth"
[[ -f "$WORK/r256m.bin" ]] || head -c 256M /dev/urandom >"$WORK/r256m.bin"

REPO="$WORK/repo"
rm -rf "$REPO"
"$HORT" init -r "$REPO" >/dev/null
"$HORT" backup -r "$REPO" --stdin --stream-name base <"$WORK/r256m.bin" >/dev/null 2>&1
BASE="$("$HORT" snapshots -r "$REPO" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["id"])')"
# measure LABEL COMMAND...: seconds and peak RSS of one command.
measure() {
    local label="$1"
    shift
    /usr/bin/time -f "$label: %e s, peak RSS %M KiB" "$@" 2>&1 >/dev/null | tail -n 1
}

echo "$(date -u '+%F %H:%M') UTC, $(nproc) cores, $("$HORT" --version 2>/dev/null || echo hort-agent)"
added=0
for count in "${COUNTS[@]}"; do
    if ((count > added)); then
        "$GROW" "$REPO" $((count - added)) >/dev/null
        added=$count
    fi
    echo "-- $added synthetic blobs, index files $(du -sh "$REPO/index" | cut -f1)"
    head -c 64M /dev/urandom >"$WORK/r64m.bin"
    measure "backup of 64 MiB (new data)" "$HORT" backup -r "$REPO" --stdin --stream-name "s$count" <"$WORK/r64m.bin"
    measure "restore of the 256 MiB stream" "$HORT" restore -r "$REPO" "$BASE" --stream base
done
rm -rf "$REPO"
