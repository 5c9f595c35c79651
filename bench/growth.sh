#!/usr/bin/env bash
# Peak RSS of `hort-agent backup --stdin` as the data and the repository grow: a fresh
# backup of a 1 GiB stream, a fresh backup of a 4 GiB stream, then 1 GiB more (other bytes)
# into the 4 GiB repository. The streams are random, so every chunk is new.
#
#   bench/growth.sh [WORKDIR] [HORT_AGENT]
#
# WORKDIR (default ~/.cache/hort/growth) holds the random files (4 GiB) and one repository
# (up to 5 GiB) while it runs; the repository is removed at the end. HORT_AGENT defaults to
# a release build of this tree. Needs GNU time (/usr/bin/time).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-$HOME/.cache/hort/growth}"
HORT="${2:-}"
export HORT_PASSWORD=bench-password AWS_EC2_METADATA_DISABLED=true
mkdir -p "$WORK"
if [[ -z "$HORT" ]]; then
    (cd "$HERE/.." && cargo build --release -p hort-agent >&2)
    HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"
fi
[[ -f "$WORK/r1g.bin" ]] || head -c 1G /dev/urandom >"$WORK/r1g.bin"
[[ -f "$WORK/r3g.bin" ]] || head -c 3G /dev/urandom >"$WORK/r3g.bin"

REPO="$WORK/repo"
fresh() { rm -rf "$REPO"; "$HORT" init -r "$REPO" >/dev/null; }
# measure LABEL: backs up stdin as a stream; prints seconds and peak RSS.
measure() {
    /usr/bin/time -f "$1: %e s, user %U s, sys %S s, peak RSS %M KiB" \
        "$HORT" backup -r "$REPO" --stdin --stream-name "s$RANDOM" 2>&1 >/dev/null | tail -n 1
}

echo "$(date -u '+%F %H:%M') UTC, $(nproc) cores, $("$HORT" --version 2>/dev/null || echo hort-agent)"
fresh
measure "fresh 1 GiB" <"$WORK/r1g.bin"
fresh
cat "$WORK/r1g.bin" "$WORK/r3g.bin" | measure "fresh 4 GiB"
# Other bytes: the first GiB with every byte value shifted by one.
tr '\000-\377' '\001-\377\000' <"$WORK/r1g.bin" | measure "1 GiB more into the 4 GiB repository"
"$HORT" stats -r "$REPO" | tail -n 1
rm -rf "$REPO"
