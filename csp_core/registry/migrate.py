"""Alembic, configured in code: no alembic.ini, scripts shipped inside the package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from csp_core.registry.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key serialising concurrent upgrades of one PostgreSQL database.
MIGRATION_LOCK_ID = 0x637370  # "csp"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An alembic Config for the registry; env.py uses `connection` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a '%' in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run(target: str | Engine, action: str, revision: str) -> None:
    owned = isinstance(target, str)
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        # write=True: on SQLite the migration takes the write lock up front (BEGIN IMMEDIATE),
        # so two processes upgrading at once run one after the other.
        with engine.execution_options(csp_write=True).connect() as connection:
            if connection.dialect.name == "postgresql":
                # Worker replicas and the API start together and each upgrades: one at a time
                # (the lock ends with the transaction), the others then find nothing to do.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            config = alembic_config(connection=connection)
            with _foreign_keys_checked_at_end(connection):
                if action == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
            connection.commit()
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _foreign_keys_checked_at_end(connection: Connection) -> Iterator[None]:
    """SQLite changes a constraint by rebuilding the table (copy, drop, rename); with foreign
    keys enforced, dropping a referenced table fails. So they are off while migrating (a PRAGMA
    that only works outside a transaction) and checked before the migration commits."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            connection.rollback()
            raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on a database URL or an existing engine."""
    _run(target, "upgrade", revision)


def downgrade(target: str | Engine, revision: str) -> None:
    _run(target, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
