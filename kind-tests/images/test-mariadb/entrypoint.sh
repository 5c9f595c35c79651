#!/bin/sh
# Initialise the data directory on first start (root password from MARIADB_ROOT_PASSWORD, default
# "hort"; optional MARIADB_DATABASE), then run mariadbd in the foreground on all addresses.
# Arguments are passed to mariadbd after the defaults (`--bind-address=127.0.0.1` overrides them).
set -eu
: "${MARIADB_ROOT_PASSWORD:=hort}"
datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
  # As root it makes the files mysql's; as any other user (a Verification's server runs as 999
  # on an emptyDir it may not chown) it keeps them its own.
  user=""
  [ "$(id -u)" = 0 ] && user=--user=mysql
  mariadb-install-db $user --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null
  init="$(mktemp)"
  {
    echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
    # Over TCP from the pod itself (a Verification's agent), these match before root@'%'.
    echo "ALTER USER IF EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
    echo "ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
    # mariadb-install-db also makes root@<pod host name>, which this server (--skip-name-resolve)
    # does not load, so `mariadb-dump --system=users` would fail on it: remove it
    echo "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1', '%');"
    echo "DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1', '%');"
    [ -n "${MARIADB_DATABASE:-}" ] && echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
    echo "FLUSH PRIVILEGES;"
  } >"$init"
  exec mariadbd --datadir="$datadir" --bind-address=0.0.0.0 --skip-name-resolve --init-file="$init" "$@"
fi
exec mariadbd --datadir="$datadir" --bind-address=0.0.0.0 --skip-name-resolve "$@"
