#!/usr/bin/env bash
# Runs Hort, restic, borg and kopia on the same corpus and the same local disk, with zstd
# (level 3 or the tool's equivalent) and encryption on everywhere, and prints one table:
# first backup, unchanged re-backup, repository size after a series of database dumps,
# restore, peak RSS of the first backup, verify (reading all data) and prune, then Hort's
# ratio to each tool.
#
# usage: bench/run.sh [WORKDIR] [SCALE] [TOOL...]
#        (default WORKDIR ~/.cache/hort/bench, SCALE 1, tools: hort restic borg kopia)
# BENCH_TREE=DIR backs up, restores and verifies the directory DIR (e.g. a real directory of
# several hundred MB that the corpus did not generate, such as /usr/lib/x86_64-linux-gnu)
# instead of the corpus's tree; the dump series stays the corpus's.
# BENCH_RESTORE=DIR restores into DIR (e.g. /dev/shm/hort-bench) instead of WORKDIR/restore,
# so that a disk slower than the restorers does not make them all look alike.
# ROUNDS (default 3) rounds run every tool in turn; the table shows each tool's best
# (lowest) time and RSS over the rounds, so a burst of other work on the machine during one
# round does not decide the result.
# Needs: python3, /usr/bin/time, restic and borgbackup (Debian packages); kopia is built from
# its Go module into ~/.cache/hort/bin on first use (see README.md). Nothing leaves the machine.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench}"
SCALE="${2:-1}"
ROUNDS="${ROUNDS:-3}"
shift 2 2>/dev/null || shift $#
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hort"
KOPIA_VERSION=v0.21.1
export AWS_EC2_METADATA_DISABLED=true
export HORT_PASSWORD=bench-password RESTIC_PASSWORD=bench-password BORG_PASSPHRASE=bench-password KOPIA_PASSWORD=bench-password
export BORG_BASE_DIR="$WORK/borg-base" BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export KOPIA_CHECK_FOR_UPDATES=false KOPIA_CONFIG_PATH="$WORK/kopia/repository.config"
export KOPIA_CACHE_DIRECTORY="$WORK/kopia/cache" KOPIA_LOG_DIR="$WORK/kopia/logs"

cargo build --release -p hort-agent --manifest-path "$HERE/../Cargo.toml" >&2
HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"

# kopia is not packaged by Debian: build it from its Go module. `go install pkg@version`
# fails (the module proxy refuses kopia's version list, which that command reads for
# deprecation notices), so build it inside a throwaway module that requires it.
KOPIA="$CACHE/bin/kopia"
if [[ ! -x "$KOPIA" ]] && command -v go >/dev/null; then
    echo "building kopia $KOPIA_VERSION into $KOPIA" >&2
    mkdir -p "$CACHE/kopia-build" "$CACHE/bin"
    printf 'module hort.invalid/bench/kopia\n\ngo 1.26\n\nrequire github.com/kopia/kopia %s\n' \
        "$KOPIA_VERSION" >"$CACHE/kopia-build/go.mod"
    (cd "$CACHE/kopia-build" && GOFLAGS=-mod=mod go build -o "$KOPIA" github.com/kopia/kopia) >&2 ||
        echo "kopia did not build; leaving it out" >&2
fi

CORPUS="$WORK/corpus-$SCALE"
if [[ ! -f "$CORPUS/.done" ]]; then
    rm -rf "$CORPUS"
    echo "generating corpus (scale $SCALE) in $CORPUS" >&2
    python3 "$HERE/corpus.py" "$CORPUS" --scale "$SCALE"
    touch "$CORPUS/.done"
fi
TREE="${BENCH_TREE:-$CORPUS/tree}"
TREE="$(cd "$TREE" && pwd -P)"
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
DUMP_BYTES=$(du -cb "$CORPUS"/dumps/*.sql | tail -1 | cut -f1)

# measure NAME CMD...: runs CMD, records "seconds max_rss_kib" in $RESULTS/NAME (this round's results).
measure() {
    local name="$1"
    shift
    /usr/bin/time -f "%e %M" -o "$RESULTS/$name" "$@" >"$WORK/logs/$name.log" 2>&1 ||
        { echo "FAILED: $name (see $WORK/logs/$name.log)" >&2; echo "nan 0" >"$RESULTS/$name"; }
}

# sum_results OUT IN...: adds the seconds and takes the largest RSS of several steps.
sum_results() {
    local out="$1"
    shift
    python3 - "$RESULTS" "$out" "$@" <<'PY'
import sys, os
d, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
secs, rss = 0.0, 0
for n in names:
    s, r = open(os.path.join(d, n)).read().split()
    secs += float(s)
    rss = max(rss, int(r))
open(os.path.join(d, out), "w").write(f"{secs} {rss}\n")
PY
}

run_tool() {
    local tool="$1" repo="$WORK/repos/$1" restore="$RESTORE_ROOT/$1"
    rm -rf "$repo" "$restore"
    mkdir -p "$restore"
    local i=0
    case "$tool" in
    hort)
        # Defaults: zstd level 3, XChaCha20-Poly1305, Argon2id key file (32 MiB x 6 passes).
        "$HORT" --repo "$repo" init --quiet >/dev/null
        measure hort-backup1 "$HORT" --repo "$repo" --quiet backup "$TREE"
        measure hort-backup2 "$HORT" --repo "$repo" --quiet backup "$TREE"
        measure hort-restore "$HORT" --repo "$repo" --quiet restore latest --target "$restore"
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size-tree"
        for f in "$CORPUS"/dumps/gen*.sql; do
            measure hort-dump "$HORT" --repo "$repo" --quiet backup --stdin --stream-name db <"$f"
        done
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size"
        measure hort-verify "$HORT" --repo "$repo" --quiet verify --read-data
        # Condemn, then delete (Hort's two phases; --grace 0 deletes in the second run).
        measure hort-prune1 "$HORT" --repo "$repo" --quiet prune --keep-last 3 --grace 0
        measure hort-prune2 "$HORT" --repo "$repo" --quiet prune --gc-only --grace 0
        sum_results hort-prune hort-prune1 hort-prune2
        ;;
    restic)
        local cache="$WORK/restic-cache"
        rm -rf "$cache"
        # Repository format 2 (compressed); --compression auto is zstd's default level (3).
        restic -r "$repo" init --repository-version 2 >/dev/null
        measure restic-backup1 restic -r "$repo" --cache-dir "$cache" backup "$TREE"
        measure restic-backup2 restic -r "$repo" --cache-dir "$cache" backup "$TREE"
        measure restic-restore restic -r "$repo" --cache-dir "$cache" restore latest --target "$restore"
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size-tree"
        for f in "$CORPUS"/dumps/gen*.sql; do
            measure restic-dump restic -r "$repo" --cache-dir "$cache" backup --stdin --stdin-filename db.sql <"$f"
        done
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size"
        measure restic-verify restic -r "$repo" --cache-dir "$cache" check --read-data
        measure restic-prune restic -r "$repo" --cache-dir "$cache" forget --keep-last 3 --prune
        ;;
    borg)
        borg init -e repokey "$repo" >/dev/null 2>&1
        measure borg-backup1 borg create --compression zstd,3 "$repo::t1" "$TREE"
        measure borg-backup2 borg create --compression zstd,3 "$repo::t2" "$TREE"
        measure borg-restore sh -c "cd '$restore' && borg extract '$repo::t2'"
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size-tree"
        for f in "$CORPUS"/dumps/gen*.sql; do
            i=$((i + 1))
            measure borg-dump borg create --compression zstd,3 "$repo::d$i" - <"$f"
        done
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size"
        measure borg-verify borg check --verify-data "$repo"
        # borg 1.2 frees space only in `compact`.
        measure borg-prune1 borg prune --keep-last 3 --glob-archives 'd*' "$repo"
        measure borg-prune2 borg compact "$repo"
        sum_results borg-prune borg-prune1 borg-prune2
        ;;
    kopia)
        rm -rf "$WORK/kopia"
        mkdir -p "$repo"
        # AES256-GCM-HMAC-SHA256 (kopia's default) and zstd (klauspost's default level,
        # comparable to zstd 3) for every source.
        "$KOPIA" repository create filesystem --path "$repo" >/dev/null 2>&1
        "$KOPIA" policy set --global --compression zstd >/dev/null
        measure kopia-backup1 "$KOPIA" snapshot create "$TREE"
        measure kopia-backup2 "$KOPIA" snapshot create "$TREE"
        local snap
        snap=$("$KOPIA" snapshot list "$TREE" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
        measure kopia-restore "$KOPIA" snapshot restore "$snap" "$restore/tree"
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size-tree"
        for f in "$CORPUS"/dumps/gen*.sql; do
            measure kopia-dump "$KOPIA" snapshot create --stdin-file db.sql - <"$f"
        done
        du -sb "$repo" | cut -f1 >"$RESULTS/$tool-size"
        measure kopia-verify "$KOPIA" snapshot verify --verify-files-percent 100
        # Keep the last 3 snapshots per source (kopia applies retention after every snapshot,
        # so the policy is set only now), expire, then delete unreferenced data at once.
        "$KOPIA" policy set --global --keep-latest 3 --keep-hourly 0 --keep-daily 0 \
            --keep-weekly 0 --keep-monthly 0 --keep-annual 0 >/dev/null
        measure kopia-prune1 "$KOPIA" snapshot expire --all --delete
        measure kopia-prune2 "$KOPIA" maintenance run --full --safety none
        sum_results kopia-prune kopia-prune1 kopia-prune2
        ;;
    esac
    local restored="$restore"
    case "$tool" in
    restic | borg) restored="$restore$TREE" ;;
    kopia) restored="$restore/tree" ;;
    esac
    # --no-dereference: compare symbolic links as links; a relative link that leaves the tree
    # (several do in /usr/lib) would dangle in the restored copy and fail the comparison.
    if ! diff -rq --no-dereference "$TREE" "$restored" >/dev/null; then
        echo "WARNING: $tool restore differs from the source" >&2
    fi
}

RESTORE_ROOT="${BENCH_RESTORE:-$WORK/restore}"
mkdir -p "$WORK/logs" "$WORK/repos" "$RESTORE_ROOT"
rm -rf "$WORK/results"
if [[ $# -gt 0 ]]; then
    TOOLS=("$@")
else
    TOOLS=(hort restic)
    command -v borg >/dev/null && TOOLS+=(borg)
    [[ -x "$KOPIA" ]] && TOOLS+=(kopia)
fi
for round in $(seq 1 "$ROUNDS"); do
    RESULTS="$WORK/results/$round"
    mkdir -p "$RESULTS"
    for tool in "${TOOLS[@]}"; do
        echo "round $round: $tool" >&2
        run_tool "$tool"
    done
done
rm -rf "${RESTORE_ROOT:?}"/*

echo
echo "tree $TREE: $((TREE_BYTES / 1048576)) MiB; corpus dumps $((DUMP_BYTES / 1048576)) MiB ($(ls "$CORPUS"/dumps | wc -l) generations); $(nproc) cores; $(date -u +%F); best of $ROUNDS rounds"
echo
python3 - "$WORK/results" "$TREE_BYTES" "${TOOLS[@]}" <<'PY'
import math, os, sys
d, tree, tools = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
mib = tree / 1048576

rounds = sorted(os.listdir(d))

def get(name):
    """Best (lowest) seconds and RSS in MiB over the rounds."""
    secs, rss = [], []
    for r in rounds:
        try:
            s, m = open(os.path.join(d, r, name)).read().split()
            if not math.isnan(float(s)):
                secs.append(float(s))
                rss.append(int(m) / 1024)
        except (OSError, ValueError):
            pass
    return (min(secs), min(rss)) if secs else (math.nan, math.nan)

def size(t, what="size"):
    for r in reversed(rounds):
        try:
            return int(open(os.path.join(d, r, f"{t}-{what}")).read()) / 1048576
        except (OSError, ValueError):
            pass
    return math.nan

rows = {}
for t in tools:
    b1, rss = get(f"{t}-backup1")
    b2, _ = get(f"{t}-backup2")
    rs, rrss = get(f"{t}-restore")
    vf, _ = get(f"{t}-verify")
    pr, _ = get(f"{t}-prune")
    rows[t] = dict(backup=mib / b1, rebackup=b2, dumps=size(t) - size(t, "size-tree"), size=size(t),
                   restore=mib / rs, rrss=rrss, rss=rss, verify=vf, prune=pr)

cols = [("first backup MiB/s", "backup", "{:.0f}"), ("unchanged re-backup s", "rebackup", "{:.1f}"),
        ("dump series stored MiB", "dumps", "{:.1f}"), ("repo after tree + dumps MiB", "size", "{:.0f}"),
        ("restore MiB/s", "restore", "{:.0f}"), ("restore peak RSS MiB", "rrss", "{:.0f}"),
        ("backup peak RSS MiB", "rss", "{:.0f}"), ("verify (all data) s", "verify", "{:.1f}"),
        ("prune s", "prune", "{:.1f}")]
print("| tool | " + " | ".join(c[0] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for t, r in rows.items():
    print(f"| {t} | " + " | ".join(f.format(r[k]) for _, k, f in cols) + " |")
if "hort" in rows:
    for t, r in rows.items():
        if t == "hort":
            continue
        h = rows["hort"]
        print(f"| hort / {t} | " + " | ".join(f"{h[k] / r[k]:.2f}x" for _, k, _ in cols) + " |")
    print()
    print("Ratios are Hort's value divided by the other tool's: above 1 is better for MiB/s,")
    print("below 1 is better for seconds, MiB of repository and MiB of RSS.")
PY
