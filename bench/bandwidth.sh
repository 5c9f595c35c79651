#!/usr/bin/env bash
# Measures how closely hort-agent holds its bandwidth limits (--limit-upload,
# --limit-download; docs/limits.md): backs up SIZE_MIB MiB of incompressible data under each
# upload limit and restores it under the same download limit, to a directory and to an S3
# server on loopback (s3s-fs), and prints the bytes the agent counted (its own log line),
# the wall time of the command and the measured rate as a share of the limit. The rate
# includes the command's start, index loading and chunking, so it is at most 100 %.
#
# usage: bench/bandwidth.sh [WORKDIR]
#        (default WORKDIR ~/.cache/hort/bench-bandwidth)
# HORT_AGENT: the binary to measure (default: a release build of this checkout);
# SIZE_MIB (default 64); LIMITS (default "4Mi 16Mi"); TARGETS (default "dir s3"). Nothing
# leaves the machine.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/hort/bench-bandwidth}"
SIZE_MIB="${SIZE_MIB:-64}"
LIMITS="${LIMITS:-4Mi 16Mi}"
TARGETS="${TARGETS:-dir s3}"
export AWS_EC2_METADATA_DISABLED=true HORT_PASSWORD=bench-password HORT_LOG=info HORT_LOG_FORMAT=json
if [[ -z "${HORT_AGENT:-}" ]]; then
    cargo build --release -p hort-agent --manifest-path "$HERE/../Cargo.toml" >&2
    HORT_AGENT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"
fi
S3S_FS="$("$HERE/../agent/scripts/install-s3s-fs.sh")"
rm -rf "$WORK" && mkdir -p "$WORK/s3/hort"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$S3S_FS" --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench-secret-key "$WORK/s3" >/dev/null 2>&1 &
S3S_PID=$!
trap 'kill $S3S_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

# The bytes the agent counted in DIRECTION, from its log on stderr (file $1).
counted() {
    python3 - "$1" "$2" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        fields = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if fields.get("direction") == sys.argv[2]:
        print(fields["bytes"])
        break
else:
    print(0)
PYEOF
}

# Runs hort-agent with ARGS under VARIABLE=LIMIT and prints one table row.
measure() {
    local target="$1" direction="$2" variable="$3" limit="$4"
    shift 4
    local start end bytes
    start="$(date +%s.%N)"
    env "$variable=$limit" "$HORT_AGENT" "$@" >/dev/null 2>"$WORK/log"
    end="$(date +%s.%N)"
    bytes="$(counted "$WORK/log" "$direction")"
    python3 - "$target" "$direction" "$limit" "$bytes" "$start" "$end" <<'PYEOF'
import sys
target, direction, limit, counted, start, end = sys.argv[1:]
units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
rate = int(limit[:-2]) * units[limit[-2:]]
seconds = float(end) - float(start)
measured = int(counted) / seconds
print(f"| {target} | {direction} | {limit}/s | {int(counted) / 2**20:.1f} MiB | {seconds:.2f} s | "
      f"{measured / 2**20:.2f} MiB/s | {100 * measured / rate:.1f} % |")
PYEOF
}

echo "| target | direction | limit | counted | time | measured | of the limit |"
echo "|---|---|---|---|---|---|---|"
for target in $TARGETS; do
    if [[ $target == dir ]]; then
        export HORT_REPOSITORY="$WORK/repo"
        unset HORT_S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    else
        export HORT_REPOSITORY="s3://hort/repo" HORT_S3_ENDPOINT="http://127.0.0.1:$PORT"
        export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
    fi
    "$HORT_AGENT" init --kdf-memory-kib 64 --kdf-iterations 1 >/dev/null 2>&1
    for limit in $LIMITS; do
        data="$WORK/data-$target-$limit"
        mkdir -p "$data"
        head -c "$((SIZE_MIB << 20))" /dev/urandom >"$data/noise"
        measure "$target" upload HORT_LIMIT_UPLOAD "$limit" backup "$data" --tag "$limit"
        measure "$target" download HORT_LIMIT_DOWNLOAD "$limit" \
            restore latest --tag "$limit" --target "$WORK/restored-$target-$limit"
        cmp "$data/noise" "$WORK/restored-$target-$limit$data/noise" 2>/dev/null \
            || cmp "$data/noise" "$WORK/restored-$target-$limit/noise"
    done
done
