#!/bin/sh
# Creates the roles and databases of the stack, each role owning its databases:
#   TEMPORAL_DB_USER owns temporal and temporal_visibility (their schema: the temporal-schema
#   service, with Temporal's temporal-sql-tool); CSP_DB_USER owns the csp registry (its tables:
#   the worker's Alembic migrations on start).
# The postgres image runs it once, on an empty data directory (/docker-entrypoint-initdb.d/).
# It is idempotent, so it can be run again by hand on an existing one (docs/deploy.md):
#   docker compose exec postgresql sh /docker-entrypoint-initdb.d/10-databases.sh
set -eu

: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
: "${CSP_DB_PASSWORD:?set CSP_DB_PASSWORD}"

psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
    -v temporal_user="${TEMPORAL_DB_USER:-temporal}" \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" \
    -v temporal_db="${TEMPORAL_DB_NAME:-temporal}" \
    -v visibility_db="${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility}" \
    -v csp_user="${CSP_DB_USER:-csp}" \
    -v csp_password="$CSP_DB_PASSWORD" \
    -v csp_db="${CSP_DB_NAME:-csp}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'temporal_user', :'temporal_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'temporal_user') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'csp_user', :'csp_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'csp_user') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', name, owner)
  FROM (VALUES (:'temporal_db', :'temporal_user'),
               (:'visibility_db', :'temporal_user'),
               (:'csp_db', :'csp_user')) AS wanted(name, owner)
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name) \gexec

-- Only the owners connect (PostgreSQL grants CONNECT to PUBLIC by default).
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', name)
  FROM (VALUES (:'temporal_db'), (:'visibility_db'), (:'csp_db')) AS owned(name) \gexec
SQL
echo "databases ready: ${TEMPORAL_DB_NAME:-temporal}, ${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility} (${TEMPORAL_DB_USER:-temporal}), ${CSP_DB_NAME:-csp} (${CSP_DB_USER:-csp})"
