#!/usr/bin/env bash
# Backup and restore throughput on one core against two (`taskset`), for the tree of the
# corpus and for one large stream, with everything (repository, spool, restore target) in
# /dev/shm so the disk does not decide the result.
#
# usage: bench/cores.sh [WORKDIR] [CPUS...]
#        (default WORKDIR /dev/shm/hort-cores; CPUS default "0" "0,1")
# ROUNDS (default 3) rounds alternate the CPU sets. The stream is STREAM_MIB (default 1024)
# MiB: 8 MiB blocks alternating SQL dump text (the corpus's gen0.sql, repeated) and random
# bytes (fixed seed). The corpus is the one of run.sh (CORPUS, default
# ~/.cache/hort/bench/corpus-1, made by corpus.py). HORT names an agent binary to use
# instead of building one (e.g. an older build for a before/after pair).
# Prints, per CPU set, the median and best wall time of each step as MiB/s, the ratio of
# the last CPU set to the first, and the peak RSS (GNU time); "engine" columns are the
# durations the agent reports (without opening the repository: key derivation, index).
# A last row, "machine", is what the machine gave at the time: as many `sha256sum`s of
# 256 MiB as there are CPUs in the set, side by side (work that needs nothing from each
# other), as MiB/s of all of them; on an idle 2-core machine its ratio is about 2.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/dev/shm/hort-cores}"
shift $(($# > 0 ? 1 : 0))
CPUS=("$@")
[[ ${#CPUS[@]} -gt 0 ]] || CPUS=(0 0,1)
ROUNDS="${ROUNDS:-3}"
STREAM_MIB="${STREAM_MIB:-1024}"
CORPUS="${CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench/corpus-1}"
export HORT_PASSWORD=bench-password

if [[ -z "${HORT:-}" ]]; then
    cargo build --release -p hort-agent --manifest-path "$HERE/../Cargo.toml" >&2
    HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"
fi

if [[ ! -d "$CORPUS/tree" ]]; then
    python3 "$HERE/corpus.py" "$CORPUS" --scale 1
fi
mkdir -p "$WORK"
STREAM="$WORK/stream.bin"
if [[ ! -f "$STREAM" ]]; then
    python3 - "$CORPUS/dumps/gen0.sql" "$STREAM" "$STREAM_MIB" <<'PY'
import random, sys
dump, out, mib = open(sys.argv[1], "rb").read(), open(sys.argv[2], "wb"), int(sys.argv[3])
rng, block, pos = random.Random(19), 8 << 20, 0
for i in range(mib // 8):
    if i % 2 == 0:
        pos = 0 if pos + block > len(dump) else pos
        out.write(dump[pos:pos + block])
        pos += block
    else:
        out.write(rng.randbytes(block))
PY
fi
TREE_BYTES=$(du -sb "$CORPUS/tree" | cut -f1)
STREAM_BYTES=$(stat -L -c %s "$STREAM")

# step NAME CPUS CMD...: runs CMD on CPUS; appends "cpus wall_s rss_kib engine_s" to NAME.
step() {
    local name="$1" cpus="$2"
    shift 2
    rm -f "$WORK/report"
    HORT_TERMINATION_LOG="$WORK/report" /usr/bin/time -f "%e %M" -o "$WORK/time" \
        taskset -c "$cpus" "$@" >"$WORK/out" 2>"$WORK/err" ||
        { echo "FAILED: $name on $cpus" >&2; cat "$WORK/err" >&2; exit 1; }
    local engine
    engine=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["durationSeconds"])' "$WORK/report" 2>/dev/null || echo nan)
    echo "$cpus $(cat "$WORK/time") $engine" >>"$WORK/results/$name"
}

head -c 256M "$STREAM" >"$WORK/calibrate.bin"

# calibrate CPUS: one sha256sum of calibrate.bin per CPU of the set, side by side; records
# "cpus wall_s 0 wall_s" with the wall time scaled to one file's worth per CPU.
calibrate() {
    local cpus="$1" n
    n=$(($(tr -cd ',' <<<"$cpus" | wc -c) + 1))
    /usr/bin/time -f "%e" -o "$WORK/time" taskset -c "$cpus" \
        sh -c 'for i in $(seq "$0"); do sha256sum "$1" >/dev/null & done; wait' "$n" "$WORK/calibrate.bin"
    python3 -c 'import sys; t = float(open(sys.argv[1]).read()) / int(sys.argv[2]); print(sys.argv[3], t, 0, t)' \
        "$WORK/time" "$n" "$cpus" >>"$WORK/results/machine"
}

rm -rf "$WORK/results"
mkdir -p "$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
    for cpus in "${CPUS[@]}"; do
        echo "round $round: cpus $cpus (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        calibrate "$cpus"
        rm -rf "$WORK/repo" "$WORK/spool" "$WORK/restore" "$WORK/stream.out"
        mkdir -p "$WORK/spool" "$WORK/restore"
        H=("$HORT" --repo "$WORK/repo" --spool-dir "$WORK/spool" --quiet)
        "${H[@]}" init >/dev/null
        step tree-backup "$cpus" "${H[@]}" backup "$CORPUS/tree"
        step tree-restore "$cpus" "${H[@]}" restore latest --target "$WORK/restore"
        diff -rq "$CORPUS/tree" "$WORK/restore" >/dev/null || { echo "restore differs" >&2; exit 1; }
        rm -rf "$WORK/restore"
        step stream-backup "$cpus" sh -c '"$@" <"$0"' "$STREAM" "${H[@]}" backup --stdin --stream-name big
        step stream-restore "$cpus" sh -c '"$@" >"$0"' "$WORK/stream.out" "${H[@]}" restore latest --stream big
        cmp -s "$STREAM" "$WORK/stream.out" || { echo "stream restore differs" >&2; exit 1; }
        rm -f "$WORK/stream.out"
    done
done
rm -rf "$WORK/repo" "$WORK/spool" "$WORK/restore" "$WORK/calibrate.bin"

echo
echo "tree $((TREE_BYTES / 1048576)) MiB, stream $((STREAM_BYTES / 1048576)) MiB; $(nproc) cores; $(date -u '+%F %H:%M') UTC; load $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds"
echo
python3 - "$WORK/results" "$TREE_BYTES" "$STREAM_BYTES" "${CPUS[@]}" <<'PY'
import math, os, statistics, sys
d, tree, stream, cpus = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
steps = [("tree backup", "tree-backup", tree), ("stream backup", "stream-backup", stream),
         ("tree restore", "tree-restore", tree), ("stream restore", "stream-restore", stream),
         ("machine (sha256sum)", "machine", 256 << 20)]
head = ["step"]
for c in cpus:
    head += [f"cpus {c} MiB/s median (best)", f"cpus {c} engine MiB/s median", f"cpus {c} peak RSS MiB"]
head += [f"ratio {cpus[-1]} / {cpus[0]} median (best)", "ratio engine median"]
print("| " + " | ".join(head) + " |")
print("|---" * len(head) + "|")
for label, name, size in steps:
    rows = [l.split() for l in open(os.path.join(d, name))]
    row, med, best, eng = [label], {}, {}, {}
    for c in cpus:
        wall = [float(r[1]) for r in rows if r[0] == c]
        rss = [int(r[2]) for r in rows if r[0] == c]
        engine = [float(r[3]) for r in rows if r[0] == c and not math.isnan(float(r[3]))]
        mib = size / 1048576
        med[c], best[c] = mib / statistics.median(wall), mib / min(wall)
        eng[c] = mib / statistics.median(engine) if engine else math.nan
        row += [f"{med[c]:.0f} ({best[c]:.0f})", f"{eng[c]:.0f}", f"{max(rss) / 1024:.0f}"]
    a, b = cpus[0], cpus[-1]
    row += [f"{med[b] / med[a]:.2f}x ({best[b] / best[a]:.2f}x)", f"{eng[b] / eng[a]:.2f}x"]
    print("| " + " | ".join(row) + " |")
PY
