#!/usr/bin/env bash
# Runs Hort and restic (and borg, if installed) on the same corpus and prints a table:
# first backup, unchanged re-backup, restore (seconds and peak RSS), and the repository size
# after the tree plus a series of database dumps backed up from stdin.
#
# usage: bench/run.sh [WORKDIR] [SCALE]     (default WORKDIR ~/.cache/hort/bench, SCALE 1)
# Needs: python3, /usr/bin/time, restic (Debian package). Everything stays on local disk.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench}"
SCALE="${2:-1}"
export AWS_EC2_METADATA_DISABLED=true
export HORT_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_BASE_DIR="$WORK/borg-base"

cargo build --release -p hort-agent --manifest-path "$HERE/../Cargo.toml" >&2
HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"

CORPUS="$WORK/corpus-$SCALE"
if [[ ! -f "$CORPUS/.done" ]]; then
    rm -rf "$CORPUS"
    echo "generating corpus (scale $SCALE) in $CORPUS" >&2
    python3 "$HERE/corpus.py" "$CORPUS" --scale "$SCALE"
    touch "$CORPUS/.done"
fi
TREE_BYTES=$(du -sb "$CORPUS/tree" | cut -f1)
DUMP_BYTES=$(du -cb "$CORPUS"/dumps/*.sql | tail -1 | cut -f1)

# measure NAME CMD...: runs CMD, records "seconds max_rss_kib" in $WORK/results/NAME.
measure() {
    local name="$1"
    shift
    /usr/bin/time -f "%e %M" -o "$WORK/results/$name" "$@" >"$WORK/logs/$name.log" 2>&1 ||
        { echo "FAILED: $name (see $WORK/logs/$name.log)" >&2; echo "nan 0" >"$WORK/results/$name"; }
}

run_tool() {
    local tool="$1" repo="$WORK/repos/$1" restore="$WORK/restore/$1"
    rm -rf "$repo" "$restore"
    case "$tool" in
    hort)
        "$HORT" --repo "$repo" init --quiet >/dev/null
        measure hort-backup1 "$HORT" --repo "$repo" --quiet backup "$CORPUS/tree"
        measure hort-backup2 "$HORT" --repo "$repo" --quiet backup "$CORPUS/tree"
        measure hort-restore "$HORT" --repo "$repo" --quiet restore latest --target "$restore"
        for f in "$CORPUS"/dumps/gen*.sql; do
            measure hort-dump "$HORT" --repo "$repo" --quiet backup --stdin --stream-name db <"$f"
        done
        ;;
    restic)
        local cache="$WORK/restic-cache"
        restic -r "$repo" init >/dev/null
        measure restic-backup1 restic -r "$repo" --cache-dir "$cache" backup "$CORPUS/tree"
        measure restic-backup2 restic -r "$repo" --cache-dir "$cache" backup "$CORPUS/tree"
        measure restic-restore restic -r "$repo" --cache-dir "$cache" restore latest --target "$restore"
        for f in "$CORPUS"/dumps/gen*.sql; do
            measure restic-dump restic -r "$repo" --cache-dir "$cache" backup --stdin --stdin-filename db.sql <"$f"
        done
        ;;
    borg)
        borg init -e repokey "$repo" >/dev/null 2>&1
        measure borg-backup1 borg create --compression zstd,3 "$repo::t1" "$CORPUS/tree"
        measure borg-backup2 borg create --compression zstd,3 "$repo::t2" "$CORPUS/tree"
        mkdir -p "$restore"
        measure borg-restore sh -c "cd '$restore' && borg extract '$repo::t2'"
        local i=0
        for f in "$CORPUS"/dumps/gen*.sql; do
            i=$((i + 1))
            measure borg-dump borg create --compression zstd,3 "$repo::d$i" - <"$f"
        done
        ;;
    esac
    if ! diff -rq "$CORPUS/tree" "$restore$( [[ $tool == hort ]] || echo "$CORPUS/tree" )" >/dev/null; then
        echo "WARNING: $tool restore differs from the source" >&2
    fi
    du -sb "$repo" | cut -f1 >"$WORK/results/$tool-size"
}

mkdir -p "$WORK/results" "$WORK/logs" "$WORK/repos" "$WORK/restore"
TOOLS=(hort restic)
command -v borg >/dev/null && TOOLS+=(borg)
for tool in "${TOOLS[@]}"; do
    echo "running $tool" >&2
    run_tool "$tool"
done

mib() { python3 -c "print(f'{$1/1048576:.0f}')"; }
echo
echo "corpus: tree $(mib "$TREE_BYTES") MiB, dumps $(mib "$DUMP_BYTES") MiB ($(ls "$CORPUS"/dumps | wc -l) generations); $(nproc) cores"
echo
echo "| tool | first backup s (MiB/s) | peak RSS MiB | unchanged re-backup s | restore s (MiB/s) | restore RSS MiB | repo after tree + dumps MiB |"
echo "|---|---|---|---|---|---|---|"
for tool in "${TOOLS[@]}"; do
    read -r b1 r1 <"$WORK/results/$tool-backup1"
    read -r b2 _ <"$WORK/results/$tool-backup2"
    read -r rs rr <"$WORK/results/$tool-restore"
    size=$(cat "$WORK/results/$tool-size")
    python3 - "$tool" "$b1" "$r1" "$b2" "$rs" "$rr" "$size" "$TREE_BYTES" <<'PY'
import sys
tool, b1, r1, b2, rs, rr, size, tree = sys.argv[1:]
b1, r1, b2, rs, rr, size, tree = float(b1), int(r1), float(b2), float(rs), int(rr), int(size), int(tree)
mb = tree / 1048576
print(f"| {tool} | {b1:.1f} ({mb / b1:.0f}) | {r1 / 1024:.0f} | {b2:.1f} | {rs:.1f} ({mb / rs:.0f}) | {rr / 1024:.0f} | {size / 1048576:.0f} |")
PY
done
echo
echo "peak RSS of the dump backups (last generation): hort $(( $(cut -d' ' -f2 "$WORK/results/hort-dump") / 1024 )) MiB, restic $(( $(cut -d' ' -f2 "$WORK/results/restic-dump") / 1024 )) MiB"
