#!/usr/bin/env bash
# Database backup benchmark (issue 5): `hort-agent backup-postgres` into an S3 repository on a
# local s3s-fs, side by side with `pg_dump --format=custom --compress=0 > /dev/null` (the
# physical limit: the same dump the agent takes, thrown away), on a pgbench database of a
# chosen scale; then the share of a second (and third) backup that is stored after small
# changes, and restore times (`hort-agent restore-postgres` vs `pg_restore` of a dump file).
#
# usage: bench/db.sh [SCALE]     (default 135: pgbench scale 1 is ~15 MiB, so ~2 GiB)
#   ROUNDS (default 3): timed rounds; each round runs pg_dump, then a Hort backup into a
#                       fresh repository; the table shows the best (lowest) time of each.
#   RESTORE=0           skips the restore row (it needs ~1.7x the database size of free disk).
#   PERF=FILE           also profile one more first backup with `perf record -g` into FILE.
#   WORK_BASE           where the work directory is made (default $TMPDIR or /tmp): a new
#                       WORK_BASE/hort-bench-db.XXXXXX, removed at exit.
#
# Everything it starts (a PostgreSQL 15 server, an s3s-fs server) listens on 127.0.0.1 only,
# and is stopped, and the work directory removed, when the script exits. Needs Debian's
# postgresql-15 and postgresql-client-15 (scripts/db-servers.sh start installs them), GNU
# time (/usr/bin/time) and cargo. Run as root, the server runs as the `postgres` user.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true
HERE="$(cd "$(dirname "$0")" && pwd)"
SCALE="${1:-135}"
ROUNDS="${ROUNDS:-3}"
RESTORE="${RESTORE:-1}"
PG_BIN=/usr/lib/postgresql/15/bin
ACCESS_KEY=hort-bench-access
SECRET_KEY=hort-bench-secret-key
DB=bench

log() { printf 'db.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x "$PG_BIN/postgres" ]] || die "no PostgreSQL 15 in $PG_BIN (run scripts/db-servers.sh start, or apt-get install postgresql-15)"
[[ -x /usr/bin/time ]] || die "needs GNU time: apt-get install time"

WORK="$(mktemp -d "${WORK_BASE:-${TMPDIR:-/tmp}}/hort-bench-db.XXXXXX")"
chmod 0755 "$WORK" # the server runs as `postgres` and needs to reach its directory
PG_DIR="$WORK/pg"
S3_PID=""
PG_STARTED=0

# Run PostgreSQL's server programs as `postgres` when we are root (it refuses to run as root).
as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    local rc=$?
    set +e
    if ((PG_STARTED)); then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ -n "$S3_PID" ]]; then
        kill "$S3_PID" 2>/dev/null
        wait "$S3_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$((20000 + RANDOM % 20000))
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
free_bytes() { df -B1 --output=avail "$WORK" | tail -1 | tr -d ' '; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

# --- PostgreSQL ----------------------------------------------------------------------------
PG_PORT="$(free_port)"
PG_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
mkdir -p "$PG_DIR"
printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pwfile"
((EUID == 0)) && chown -R postgres: "$PG_DIR"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=scram-sha-256 --pwfile="$PG_DIR/pwfile" \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
rm -f "$PG_DIR/pwfile"
# fsync off (a throwaway server); wal_level minimal so that a restore in one transaction and
# pgbench's COPY FREEZE write no WAL for their new tables, and the WAL stays small on disk.
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start -o \
    "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=512MB" \
    >/dev/null || { tail -n 30 "$PG_DIR/server.log" >&2; exit 1; }
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, data in $PG_DIR/data"

# The client tools get the connection from their environment (the password never on a
# command line); nothing is exported, so hort-agent does not see these.
PGENV=(env PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres PGPASSWORD="$PG_PASSWORD")
pg() { "${PGENV[@]}" "$@"; }
psql_q() { pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

pg "$PG_BIN/createdb" "$DB"
log "pgbench -i -s $SCALE (with its vacuum) ..."
t0=$(date +%s.%N)
pg "$PG_BIN/pgbench" -i -s "$SCALE" -q "$DB" >"$WORK/pgbench-init.log" 2>&1 || { cat "$WORK/pgbench-init.log" >&2; exit 1; }
t1=$(date +%s.%N)
DB_BYTES="$(psql_q -d "$DB" -c "SELECT pg_database_size('$DB')")"
ACCOUNTS="$(psql_q -d "$DB" -c "SELECT count(*) FROM pgbench_accounts")"
log "database $DB: $(mib "$DB_BYTES") MiB ($DB_BYTES bytes, $ACCOUNTS accounts), made in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s"

# --- S3 (s3s-fs) ---------------------------------------------------------------------------
S3S="$("$HERE/../agent/scripts/install-s3s-fs.sh")"
S3_PORT="$(free_port)"
mkdir -p "$WORK/s3/hort"
"$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
    "$WORK/s3" </dev/null >"$WORK/s3s-fs.log" 2>&1 &
S3_PID=$!
wait_port "$S3_PORT" || { cat "$WORK/s3s-fs.log" >&2; die "s3s-fs did not start"; }
log "s3s-fs on 127.0.0.1:$S3_PORT, objects in $WORK/s3"

# --- hort-agent ----------------------------------------------------------------------------
cargo build --release -p hort-agent --manifest-path "$HERE/../Cargo.toml" >&2
HORT="$(cd "$HERE/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/hort-agent"

# $WORK/hort REPO ARGS...: hort-agent against s3://hort/REPO on the local s3s-fs. A script, so
# that GNU time can run it; it execs the agent, so the peak RSS measured is the agent's.
{
    echo '#!/bin/sh'
    # shellcheck disable=SC2016 # expanded by the wrapper
    echo 'repo="$1"; shift'
    printf 'exec env AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=%q AWS_SECRET_ACCESS_KEY=%q' "$ACCESS_KEY" "$SECRET_KEY"
    # shellcheck disable=SC2016
    printf ' HORT_REPOSITORY="s3://hort/$repo?endpoint=http://127.0.0.1:%s&path-style=true"' "$S3_PORT"
    printf ' HORT_PASSWORD=bench-password HORT_DB_USER=postgres HORT_DB_PASSWORD=%q HORT_LOG=warn %q "$@"\n' "$PG_PASSWORD" "$HORT"
} >"$WORK/hort"
chmod 0700 "$WORK/hort"
hort() { "$WORK/hort" "$@"; }

mkdir -p "$WORK/res" "$WORK/logs"
# measure NAME CMD...: runs CMD (stdout to $OUT, default logs/NAME.out), GNU time's
# "elapsed user sys maxrss_kib" to res/NAME.
measure() {
    local name="$1"
    shift
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/res/$name" "$@" >"${OUT:-$WORK/logs/$name.out}" 2>"$WORK/logs/$name.err" ||
        { cat "$WORK/logs/$name.err" >&2; die "$name failed"; }
}
field() { awk -v f="$2" '{print $f}' "$WORK/res/$1"; }
# best PREFIX: the round (1..ROUNDS) with the lowest elapsed time.
best() {
    local r best_r=1
    for r in $(seq 2 "$ROUNDS"); do
        awk -v a="$(field "$1.$r" 1)" -v b="$(field "$1.$best_r" 1)" 'BEGIN{exit !(a < b)}' && best_r=$r
    done
    echo "$best_r"
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- timed rounds --------------------------------------------------------------------------
for r in $(seq 1 "$ROUNDS"); do
    log "round $r/$ROUNDS: pg_dump"
    OUT=/dev/null measure "pgdump.$r" "${PGENV[@]}" "$PG_BIN/pg_dump" --format=custom --compress=0 "$DB"
    hort "r$r" init >"$WORK/logs/init.$r.out"
    # What the agent does besides the dump: count every table's rows in the dump's snapshot
    # (a scan of each table by the server) and open the repository (Argon2id, S3 listing).
    OUT=/dev/null measure "counts.$r" "${PGENV[@]}" "$PG_BIN/psql" -X -q -At -d "$DB" -c \
        "SELECT count(*) FROM ONLY pgbench_accounts; SELECT count(*) FROM ONLY pgbench_branches; SELECT count(*) FROM ONLY pgbench_history; SELECT count(*) FROM ONLY pgbench_tellers"
    log "round $r/$ROUNDS: hort-agent backup-postgres"
    HORT_TERMINATION_LOG="$WORK/res/report.hort.$r" measure "hort.$r" \
        "$WORK/hort" "r$r" backup-postgres --host 127.0.0.1 --port "$PG_PORT" --database "$DB" --json --quiet
    OUT=/dev/null measure "open.$r" "$WORK/hort" "r$r" snapshots --json
done
log "pg_dump: $(cat "$WORK"/res/pgdump.*  | tr '\n' ';')  hort: $(cat "$WORK"/res/hort.? | tr '\n' ';')"
PB="$(best pgdump)"
HB="$(best hort)"
DUMP_OUT_BYTES="$(json_field "$WORK/res/report.hort.$HB" bytesRead)"
FIRST_STORED="$(json_field "$WORK/res/report.hort.$ROUNDS" bytesStored)"
# What the repository holds: every object s3s-fs stores for it (packs, index files, snapshot
# files, keys, config), i.e. what a user pays for.
repo_bytes() { du -sb "$WORK/s3/hort/$1" | cut -f1; }
FIRST_REPO="$(repo_bytes "r$ROUNDS")"
HORT_RSS_MAX=0
for r in $(seq 1 "$ROUNDS"); do
    rss="$(field "hort.$r" 4)"
    ((rss > HORT_RSS_MAX)) && HORT_RSS_MAX=$rss
done

# --- optional profile: one more first backup (fresh repository) under `perf record` ---------
if [[ -n "${PERF:-}" ]] && command -v perf >/dev/null; then
    log "profile: perf record of one backup-postgres into $PERF"
    hort perf init >/dev/null
    perf record -q -F 499 -g -o "$PERF" -- "$WORK/hort" perf backup-postgres --host 127.0.0.1 --port "$PG_PORT" \
        --database "$DB" --json --quiet >/dev/null 2>"$WORK/logs/perf.err" || { cat "$WORK/logs/perf.err" >&2; die "perf run failed"; }
    { perf report -i "$PERF" --no-children --sort comm,dso,symbol -g none --percent-limit 1 --stdio 2>/dev/null |
        grep -v -e '^#' -e '^$' | sed 's/[ -]*$//' | head -n 30 >&2; } || true
fi

# --- changes, then backups into the last round's repository --------------------------------
LAST="r$ROUNDS"
incremental() { # NAME: backs up into $LAST; res/NAME.growth: how many bytes the repository grew
    local before
    before="$(repo_bytes "$LAST")"
    HORT_TERMINATION_LOG="$WORK/res/report.$1" measure "$1" \
        "$WORK/hort" "$LAST" backup-postgres --host 127.0.0.1 --port "$PG_PORT" --database "$DB" --json --quiet
    echo $(($(repo_bytes "$LAST") - before)) >"$WORK/res/$1.growth"
}
# row NAME LABEL TARGET: a table row for an incremental backup: how much the repository grew
# as a share of what the first backup made it (the target), the agent's bytesStored (packed
# blobs only), and new (not deduplicated, before compression) bytes as a share of those read.
row() {
    local f="$WORK/res/report.$1"
    awk -v g="$(cat "$WORK/res/$1.growth")" -v a="$(json_field "$f" bytesStored)" -v n="$(json_field "$f" bytesNew)" -v rd="$(json_field "$f" bytesRead)" \
        -v first="$FIRST_REPO" -v t="$(field "$1" 1)" -v label="$2" -v target="$3" \
        'BEGIN { p = 100 * g / first
                 printf "| %s | repository grew %.2f MiB (%.1f %% of the first backup'"'"'s) | %d bytes; blobs stored %.2f MiB; new before compression %.1f MiB = %.1f %% of the %.0f MiB read; %.1f s | %s |",
                        label, g/1048576, p, g, a/1048576, n/1048576, 100*n/rd, rd/1048576, t,
                        (target == "" ? "" : target ": " (p < 10 ? "met" : "missed")) }'
}
log "change 1: pgbench -n -t 1000 -c 2 (2,000 TPC-B-like transactions)"
pg "$PG_BIN/pgbench" -n -t 1000 -c 2 "$DB" >"$WORK/logs/pgbench-run.out" 2>&1
incremental second
log "change 2: UPDATE 1 % of pgbench_accounts, scattered (aid % 100 = 0)"
psql_q -d "$DB" -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0"
incremental third
log "change 3: none (unchanged re-backup)"
incremental unchanged

# --- restore -------------------------------------------------------------------------------
RESTORE_ROW=""
if ((RESTORE)); then
    need=$((DB_BYTES * 2))
    if (($(free_bytes) < need)); then
        log "restore skipped: $(mib "$(free_bytes)") MiB free, want $(mib "$need") MiB"
        RESTORE_ROW="| restore | skipped: not enough free disk | | |"
    else
        log "restore: pg_restore of a dump file"
        pg "$PG_BIN/pg_dump" --format=custom --compress=0 --no-sync --file="$WORK/$DB.dump" "$DB"
        DUMP_FILE_BYTES="$(stat -c %s "$WORK/$DB.dump")"
        pg "$PG_BIN/createdb" -T template0 "${DB}_pgrestore"
        # The same options the agent gives pg_restore.
        measure pgrestore "${PGENV[@]}" "$PG_BIN/pg_restore" --single-transaction --exit-on-error --no-password \
            --dbname "${DB}_pgrestore" "$WORK/$DB.dump"
        pg "$PG_BIN/dropdb" "${DB}_pgrestore"
        rm -f "$WORK/$DB.dump"
        log "restore: hort-agent restore-postgres latest"
        measure hortrestore "$WORK/hort" "$LAST" restore-postgres latest --host 127.0.0.1 --port "$PG_PORT" \
            --database "$DB=${DB}_restored" --json --quiet
        RESTORED="$(psql_q -d "${DB}_restored" -c "SELECT count(*) FROM pgbench_accounts")"
        [[ "$RESTORED" == "$ACCOUNTS" ]] || die "restored database has $RESTORED accounts, not $ACCOUNTS"
        pg "$PG_BIN/dropdb" "${DB}_restored"
        pr="$(field pgrestore 1)"
        hr="$(field hortrestore 1)"
        RESTORE_ROW="$(awk -v p="$pr" -v h="$hr" -v b="$DUMP_FILE_BYTES" -v hu="$(field hortrestore 2)" -v hs="$(field hortrestore 3)" -v pu="$(field pgrestore 2)" -v ps="$(field pgrestore 3)" -v rss="$(field hortrestore 4)" \
            'BEGIN { printf "| restore (one run each; %.0f MiB dump) | pg_restore of the file: %.1f s (%.0f MiB/s; user %.1f s, sys %.1f s) | hort-agent restore-postgres: %.1f s (%.0f MiB/s; user %.1f s, sys %.1f s, peak RSS %.0f MiB) | %.2fx |",
                     b/1048576, p, b/1048576/p, pu, ps, h, b/1048576/h, hu, hs, rss/1024, h/p }')"
    fi
fi

# --- table ---------------------------------------------------------------------------------
pt="$(field "pgdump.$PB" 1)"
ht="$(field "hort.$HB" 1)"
cat <<EOF

pgbench scale $SCALE ($ACCOUNTS accounts), best of $ROUNDS rounds; $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)

| measure | value | detail | target |
|---|---|---|---|
$(awk -v d="$DB_BYTES" -v o="$DUMP_OUT_BYTES" 'BEGIN { printf "| database size (pg_database_size) | %.0f MiB | dump stream (custom, uncompressed) %.0f MiB | |", d/1048576, o/1048576 }')
$(awk -v t="$pt" -v d="$DB_BYTES" -v o="$DUMP_OUT_BYTES" -v u="$(field "pgdump.$PB" 2)" -v s="$(field "pgdump.$PB" 3)" 'BEGIN { printf "| pg_dump -Fc --compress=0 > /dev/null | %.2f s | %.0f MiB/s of database, %.0f MiB/s of dump; pg_dump CPU user %.2f s, sys %.2f s | |", t, d/1048576/t, o/1048576/t, u, s }')
$(awk -v t="$ht" -v d="$DB_BYTES" -v o="$DUMP_OUT_BYTES" -v u="$(field "hort.$HB" 2)" -v s="$(field "hort.$HB" 3)" 'BEGIN { printf "| hort-agent backup-postgres → S3 (s3s-fs) | %.2f s | %.0f MiB/s of database, %.0f MiB/s of dump; CPU (agent + pg_dump) user %.2f s, sys %.2f s | |", t, d/1048576/t, o/1048576/t, u, s }')
$(awk -v h="$ht" -v p="$pt" 'BEGIN { printf "| ratio Hort / pg_dump (time) | %.2fx | | ≤ 1.2x: %s |", h/p, (h/p <= 1.2 ? "met" : "missed") }')
$(awk -v c="$(field "counts.$(best counts)" 1)" -v o="$(field "open.$(best open)" 1)" 'BEGIN { printf "| of Hort'"'"'s time, measured apart | | row counts (count(*) of each table, by the server): %.2f s; opening the repository (Argon2id 32 MiB × 6, S3 listing; `hort-agent snapshots`): %.2f s | |", c, o }')
| Hort peak RSS (highest of $ROUNDS) | $(mib $((HORT_RSS_MAX * 1024))) MiB | GNU time maxrss: the largest process of the tree | |
$(awk -v r="$FIRST_REPO" -v a="$FIRST_STORED" 'BEGIN { printf "| first backup: repository size | %.2f MiB | %d bytes, of which blobs (zstd 3, encrypted) %.2f MiB | |", r/1048576, r, a/1048576 }')
$(row second "second backup, after pgbench -n -t 1000 -c 2" "< 10 %")
$(row third "third backup, after UPDATE of 1 % of accounts (every 100th aid)" "")
$(row unchanged "fourth backup, unchanged" "")
$RESTORE_ROW

All rounds (elapsed s, user s, sys s, maxrss KiB):
$(for r in $(seq 1 "$ROUNDS"); do echo "  round $r: pg_dump $(cat "$WORK/res/pgdump.$r"); hort $(cat "$WORK/res/hort.$r"); row counts $(cat "$WORK/res/counts.$r"); open repository $(cat "$WORK/res/open.$r")"; done)
EOF
