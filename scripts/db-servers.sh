#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and MariaDB 10.11 servers on loopback for the database tests.
#
#   scripts/db-servers.sh start   # install Debian's packages (idempotent), start both servers
#   scripts/db-servers.sh env     # print `export HORT_TEST_…=…` lines: eval "$(scripts/db-servers.sh env)"
#   scripts/db-servers.sh status  # "up" or "down"
#   scripts/db-servers.sh stop    # stop both servers and delete their data
#
# Data lives under $HORT_DB_DIR (default /var/tmp/hort-db-servers), never in the repository;
# the servers listen on 127.0.0.1 only, and over TCP accept TLS connections only (certificate
# for 127.0.0.1 and localhost, signed by a CA made here: HORT_TEST_DB_CA), so every test also
# shows that Hort's connections are encrypted. PostgreSQL refuses to run as root, so it runs as the
# `postgres` system user; MariaDB drops to the `mysql` user. Needs root (apt-get, su).
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true

DIR="${HORT_DB_DIR:-/var/tmp/hort-db-servers}"
# Two servers of each kind: the tests back up from the first and restore into the second
# ("a fresh server") as well as into the first.
PG_PORT="${HORT_PG_PORT:-54329}"
PG_TARGET_PORT="${HORT_PG_TARGET_PORT:-54330}"
MARIADB_PORT="${HORT_MARIADB_PORT:-33069}"
MARIADB_TARGET_PORT="${HORT_MARIADB_TARGET_PORT:-33070}"
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf 'db-servers: %s\n' "$*" >&2; }

install_packages() {
  local missing=()
  local pkg
  for pkg in postgresql-15 postgresql-client-15 postgresql-contrib mariadb-server mariadb-client openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    # Debian starts the packaged clusters/services after install; these tests use their own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

password() {
  # One random password per server directory; printed by `env`, never on a command line.
  local file="$DIR/password"
  if [[ ! -s "$file" ]]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$file"
    chmod 0644 "$file"
  fi
  cat "$file"
}

# make_tls: a CA, a server certificate it signs (127.0.0.1, localhost) and a second CA that
# signs nothing (for tests of a wrong CA), under $DIR/tls; a copy of the key for each server user.
make_tls() {
  local tls="$DIR/tls"
  [[ -s "$tls/server.crt" ]] && return
  mkdir -p "$tls"
  (
    cd "$tls"
    for ca in ca other-ca; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=hort test database $ca" -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
    done
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.crt 2>/dev/null
    rm -f ca.key other-ca.key server.csr server.ext
    chmod 0644 ca.crt other-ca.crt server.crt
    for user in postgres mysql; do
      install -m 0600 -o "$user" server.key "server-$user.key"
    done
    rm -f server.key
  )
  chmod 0755 "$tls"
}

start_pg() {
  local name="$1" PG_PORT="$2"
  local PG_DATA="$DIR/$name/data"
  if [[ -f "$PG_DATA/postmaster.pid" ]] && su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$PG_DATA' status" >/dev/null 2>&1; then
    log "PostgreSQL already running on port $PG_PORT"
    return
  fi
  port_free "$PG_PORT" || { log "port $PG_PORT is taken (set HORT_PG_PORT)"; exit 1; }
  mkdir -p "$DIR/$name"
  chown postgres: "$DIR/$name"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    local pwfile="$DIR/$name/pwfile"
    password >"$pwfile"
    chown postgres: "$pwfile"
    su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$PG_DATA' -U postgres --auth=scram-sha-256 --pwfile='$pwfile' -E UTF8 --locale=C.UTF-8" >"$DIR/$name/initdb.log" 2>&1 \
      || { cat "$DIR/$name/initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
    # Over TCP only TLS connections: a client that does not encrypt is refused.
    sed -i 's/^host /hostssl /' "$PG_DATA/pg_hba.conf"
  fi
  su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$PG_DATA' -l '$DIR/$name/server.log' -w -t 60 start -o \"-p $PG_PORT -k '$DIR/$name' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file='$DIR/tls/server.crt' -c ssl_key_file='$DIR/tls/server-postgres.key'\"" >/dev/null \
    || { tail -n 30 "$DIR/$name/server.log" >&2; exit 1; }
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

start_mariadb() {
  local name="$1" MARIADB_PORT="$2"
  local MARIADB_DATA="$DIR/$name/data" MARIADB_SOCK="$DIR/$name/mysqld.sock" MARIADB_PID="$DIR/$name/mysqld.pid"
  if [[ -f "$MARIADB_PID" ]] && kill -0 "$(cat "$MARIADB_PID")" 2>/dev/null; then
    log "MariaDB already running on port $MARIADB_PORT"
    return
  fi
  port_free "$MARIADB_PORT" || { log "port $MARIADB_PORT is taken (set HORT_MARIADB_PORT)"; exit 1; }
  mkdir -p /run/mysqld "$DIR/$name"
  chown mysql: /run/mysqld "$DIR/$name"
  local fresh=0
  if [[ ! -d "$MARIADB_DATA/mysql" ]]; then
    fresh=1
    mariadb-install-db --user=mysql --datadir="$MARIADB_DATA" --skip-test-db >"$DIR/$name/install.log" 2>&1 \
      || { cat "$DIR/$name/install.log" >&2; exit 1; }
  fi
  # setsid: the server outlives this script and does not get the caller's signals.
  setsid mariadbd --no-defaults --user=mysql --datadir="$MARIADB_DATA" --skip-networking=0 \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$MARIADB_SOCK" --pid-file="$MARIADB_PID" \
    --log-error="$DIR/$name/server.log" --innodb-flush-log-at-trx-commit=0 --max-connections=200 \
    --ssl-cert="$DIR/tls/server.crt" --ssl-key="$DIR/tls/server-mysql.key" --require-secure-transport=ON \
    </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    mariadb-admin --no-defaults --socket="$MARIADB_SOCK" -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb-admin --no-defaults --socket="$MARIADB_SOCK" -uroot ping >/dev/null 2>&1 \
    || { tail -n 30 "$DIR/$name/server.log" >&2; exit 1; }
  if ((fresh)); then
    # root@localhost authenticates by unix socket (we are root); the tests use `hort` over TCP.
    # The password goes through stdin, not the command line.
    printf "CREATE USER 'hort'@'127.0.0.1' IDENTIFIED BY '%s';\nGRANT ALL PRIVILEGES ON *.* TO 'hort'@'127.0.0.1' WITH GRANT OPTION;\n" \
      "$(password)" | mariadb --no-defaults --socket="$MARIADB_SOCK" -uroot
  fi
  log "MariaDB $(mariadbd --version | awk '{print $3}') on 127.0.0.1:$MARIADB_PORT"
}

stop_all() {
  local name pid
  for name in pg pg-target; do
    if [[ -f "$DIR/$name/data/postmaster.pid" ]]; then
      su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$DIR/$name/data' -m immediate -w stop" >/dev/null 2>&1 || true
    fi
  done
  for name in mariadb mariadb-target; do
    if [[ -f "$DIR/$name/mysqld.pid" ]]; then
      pid="$(cat "$DIR/$name/mysqld.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  done
  rm -rf "$DIR"
  log "stopped; removed $DIR"
}

print_env() {
  local pw
  pw="$(password)"
  cat <<EOF
export HORT_TEST_PG_HOST=127.0.0.1
export HORT_TEST_PG_PORT=$PG_PORT
export HORT_TEST_PG_USER=postgres
export HORT_TEST_PG_PASSWORD=$pw
export HORT_TEST_PG_TARGET_PORT=$PG_TARGET_PORT
export HORT_TEST_MARIADB_HOST=127.0.0.1
export HORT_TEST_MARIADB_PORT=$MARIADB_PORT
export HORT_TEST_MARIADB_USER=hort
export HORT_TEST_MARIADB_PASSWORD=$pw
export HORT_TEST_MARIADB_TARGET_PORT=$MARIADB_TARGET_PORT
export HORT_TEST_DB_CA=$DIR/tls/ca.crt
export HORT_TEST_DB_OTHER_CA=$DIR/tls/other-ca.crt
EOF
}

case "${1:-}" in
  start)
    install_packages
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
    make_tls
    start_pg pg "$PG_PORT"
    start_pg pg-target "$PG_TARGET_PORT"
    start_mariadb mariadb "$MARIADB_PORT"
    start_mariadb mariadb-target "$MARIADB_TARGET_PORT"
    ;;
  stop) stop_all ;;
  env)
    [[ -d "$DIR" ]] || { log "not started: run scripts/db-servers.sh start"; exit 1; }
    print_env
    ;;
  status)
    if [[ -f "$DIR/mariadb-target/mysqld.pid" && -f "$DIR/pg-target/data/postmaster.pid" ]]; then echo up; else echo down; fi
    ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
