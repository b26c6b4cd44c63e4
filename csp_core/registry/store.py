"""The base of the registry's aggregate stores, and of their records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, Row
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


class Record(BaseModel):
    """Immutable, safe to hand across threads and to Temporal's pydantic converter."""

    model_config = ConfigDict(frozen=True, from_attributes=True)


class Store:
    """What every aggregate's store shares: the engine, one session and transaction per call,
    and INSERT ... ON CONFLICT in the engine's dialect."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(csp_write=True)
        self._dialect = engine.dialect.name

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        with (
            Session(self._writer if write else self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def _write_returning(
        self, write: Any, read: Any, params: dict[str, Any] | None = None
    ) -> Row[Any] | None:
        """One write (Core, with RETURNING) in its own transaction, without an ORM session: the
        row it returned, else the row as it stands (its WHERE left it alone), read in the same
        transaction; None when there is no such row. The session and statement building cost
        more than the database on the registry's hottest writes (issue 11)."""
        with self._writer.begin() as conn:
            row = conn.execute(write, params or {}).one_or_none()
            if row is None:
                row = conn.execute(read, params or {}).one_or_none()
            return row

    def _insert(self, model: type[Any]) -> Any:
        return pg_insert(model) if self._dialect == "postgresql" else sqlite_insert(model)
