#!/bin/bash
# First start on an empty volume: create the system tables, the database, the user and a
# random root password with networking off, then serve. Later starts serve at once.
set -euo pipefail
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

quote() { printf "'%s'" "${1//\'/\'\'}"; }

initialise() {
    mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db >/dev/null
    mariadbd --datadir="$datadir" --skip-networking --socket="$socket" &
    local pid=$!
    for _ in $(seq 1 60); do
        mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    local root_pw health_pw
    root_pw=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    health_pw=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    mariadb --socket="$socket" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;
CREATE USER $(quote "$MARIADB_USER")@'%' IDENTIFIED BY $(quote "$MARIADB_PASSWORD");
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO $(quote "$MARIADB_USER")@'%';
CREATE USER healthcheck@'127.0.0.1' IDENTIFIED BY '$health_pw';
CREATE USER healthcheck@'localhost' IDENTIFIED BY '$health_pw';
ALTER USER root@localhost IDENTIFIED BY '$root_pw';
FLUSH PRIVILEGES;
SQL
    printf '[mariadb-client]\nuser=healthcheck\npassword=%s\n' "$health_pw" \
        > "$datadir/.my-healthcheck.cnf"
    kill "$pid"
    wait "$pid" || true
}

if [ "$1" = "mariadbd" ]; then
    [ -d "$datadir/mysql" ] || initialise
    shift
    exec mariadbd --datadir="$datadir" --socket="$socket" --bind-address=0.0.0.0 \
        --skip-name-resolve "$@"
fi
exec "$@"
