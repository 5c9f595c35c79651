#!/usr/bin/env bash
# Fuzzes every parser of Hort's on-disk structures with libFuzzer (cargo-fuzz), each target
# for SECONDS (default 60), and fails if any target finds a crash (a panic, an overflow, an
# out-of-memory or a timeout). Crashing inputs are kept in artifacts/<target>/.
#
# usage: agent/fuzz/run.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz 0.13.2 into ~/.cache/hort/cargo-fuzz on first use. Only a stable
# toolchain is needed: RUSTC_BOOTSTRAP=1 lets it accept the `-Z` flags cargo-fuzz passes
# (sanitizer and coverage instrumentation). Builds go to agent/fuzz/target.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hort"
CARGO_FUZZ="$CACHE/cargo-fuzz/bin/cargo-fuzz"
SANITIZER="${HORT_FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1 AWS_EC2_METADATA_DISABLED=true

if [[ ! -x "$CARGO_FUZZ" ]]; then
    echo "installing cargo-fuzz into $CACHE/cargo-fuzz" >&2
    CARGO_TARGET_DIR="$CACHE/cargo-fuzz-build" cargo install cargo-fuzz --version 0.13.2 --locked \
        --root "$CACHE/cargo-fuzz" >&2
    rm -rf "$CACHE/cargo-fuzz-build"
fi

cd "$HERE"
if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <("$CARGO_FUZZ" list)
fi
"$CARGO_FUZZ" build --sanitizer "$SANITIZER" >&2
# Run the built binaries directly: `cargo fuzz run` would rebuild whenever a source file of
# the agent changed in the meantime.
BIN="$HERE/target/$(rustc -vV | sed -n 's/^host: //p')/release"

failed=()
for target in "${TARGETS[@]}"; do
    corpus="$HERE/corpus/$target"
    mkdir -p "$corpus" "$HERE/artifacts/$target"
    if [[ -d "$HERE/seeds/$target" ]]; then
        cp -n "$HERE/seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    echo "== $target: ${SECONDS_PER_TARGET}s" >&2
    log="$HERE/artifacts/$target/last-run.log"
    # -rss_limit_mb: a parser that allocates without bound on hostile input is a finding.
    if "$BIN/$target" "$corpus" -artifact_prefix="$HERE/artifacts/$target/" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done)" "$log" | tr '\n' ' ' >&2
        echo >&2
    else
        echo "FAILED: $target (see $log)" >&2
        tail -40 "$log" >&2
        failed+=("$target")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashes found in: ${failed[*]}" >&2
    exit 1
fi
echo "no crashes in ${#TARGETS[@]} targets (${SECONDS_PER_TARGET}s each)" >&2
