#!/bin/bash
# One database and one login role per client of the stack's PostgreSQL: MLflow's backend store,
# Airflow's metadata and Feast's registry. Each role owns only its database, so a candidate
# poking at the MLflow tables cannot drop Airflow's by accident.
#
# Runs once, on the first start of an empty data volume, in both the official postgres image
# and infra/postgres (both run /docker-entrypoint-initdb.d/*.sh). Passwords come from the
# environment (MLFLOW_DB_PASSWORD, AIRFLOW_DB_PASSWORD, FEAST_DB_PASSWORD), written into .env by
# `fraudlab compose-env` — never from this file.
set -euo pipefail

for name in mlflow airflow feast; do
    variable="${name^^}_DB_PASSWORD"
    password="${!variable:-}"
    if [ -z "$password" ]; then
        echo "$variable is empty: run \`make env\` to generate .env" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
    echo "database and role '$name' created"
done
