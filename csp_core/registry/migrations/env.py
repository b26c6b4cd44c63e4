"""Alembic environment. Configured programmatically by csp_core.registry.migrate (no alembic.ini).

migrate.upgrade() hands over an open connection in `config.attributes["connection"]`, so the
migration runs on the same engine settings (SQLite pragmas, PostgreSQL search_path) as the app.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from csp_core.registry.engine import make_engine
from csp_core.registry.tables import Base

config = context.config
target_metadata = Base.metadata

# Serializes concurrent upgrades (worker and CLI starting together) on PostgreSQL.
_PG_MIGRATION_LOCK = 0x0C5B_0001


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite DDL is transactional too once the engine emits BEGIN itself (see make_engine).
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.execution_options(csp_write=True).connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
