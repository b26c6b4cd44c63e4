"""The base of the registry's aggregate stores, and of their records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine
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

    def _insert(self, model: type[Any]) -> Any:
        return pg_insert(model) if self._dialect == "postgresql" else sqlite_insert(model)
