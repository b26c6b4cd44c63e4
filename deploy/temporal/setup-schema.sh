#!/bin/sh
# One-shot (the temporal-schema service, temporalio/admin-tools image): installs or upgrades the
# Temporal server's schemas in the databases init-databases.sh created, with Temporal's own
# temporal-sql-tool. Safe to repeat: setup-schema only versions an empty database, and
# update-schema applies the versions a database lacks (a server upgrade runs it again).
set -eu

: "${SQL_HOST:?set SQL_HOST}"
: "${SQL_USER:?set SQL_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"  # read by temporal-sql-tool itself
SCHEMA_DIR=${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "${SQL_PORT:-5432}" \
        -u "$SQL_USER" "$@"
}

for pair in "${TEMPORAL_DB_NAME:-temporal}:temporal" \
            "${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility}:visibility"; do
    database=${pair%%:*}
    schema=${pair##*:}
    echo "schema of $database ($schema)"
    sql_tool --db "$database" setup-schema -v 0.0
    sql_tool --db "$database" update-schema -d "$SCHEMA_DIR/$schema/versioned"
done
echo "Temporal schemas are up to date"
