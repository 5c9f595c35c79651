#!/bin/sh
# Initialise PGDATA on first start (password from POSTGRES_PASSWORD, default "hort"), then run
# PostgreSQL in the foreground, listening on all addresses with password authentication. Arguments
# are passed to postgres after the defaults, so `-c listen_addresses=127.0.0.1` overrides them.
set -eu
: "${POSTGRES_PASSWORD:=hort}"
: "${POSTGRES_USER:=postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
