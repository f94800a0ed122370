#!/bin/bash
# Entry point of the Debian-packaged PostgreSQL image (infra/postgres/Dockerfile).
#
# On the first start (empty $PGDATA) it does what the official image's entrypoint does for the
# variables the stack uses: initdb with $POSTGRES_USER / $POSTGRES_PASSWORD (scram-sha-256 over
# TCP, trust on the container-local socket), create $POSTGRES_DB, run the scripts in
# /docker-entrypoint-initdb.d against a server that listens on the socket only, stop it. Then
# it execs the server listening on every interface of the container (compose's network; the
# published port is bound to 127.0.0.1 by the compose file).
set -euo pipefail

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ "${1:-postgres}" != postgres ]; then
    exec "$@"  # e.g. `docker run … psql`
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "POSTGRES_PASSWORD is empty: set it (make env writes one into .env)" >&2
        exit 1
    fi
    echo "initialising a new cluster in $PGDATA"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        -D "$PGDATA" >/dev/null
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        [ -e "$script" ] || continue
        case "$script" in
            *.sh) echo "running $script"; bash "$script" ;;
            *.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
                --dbname "$POSTGRES_DB" -f "$script" ;;
            *) echo "ignoring $script" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "cluster ready"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "${@:2}"
