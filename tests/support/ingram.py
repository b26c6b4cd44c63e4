"""The stack on the Ingram adapter against the sandbox's Xvantage face (a fixture tests import),
and what ops do by hand in Ingram's marketplace where Xvantage has no API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.smtp_sink import SmtpSink
from tests.conftest import SANDBOX_TOKEN
from tests.support.stack import Stack, running_stack


@pytest_asyncio.fixture(loop_scope="session")
async def ingram(
    ts_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    async with running_stack(
        ts_env,
        sandbox=sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="ingram-ops",
        ingram=True,
    ) as stack:
        yield stack


def at_ingram(stack: Stack, subscription_id: str, **change: object) -> None:
    """Ops change the subscription by hand in Ingram's marketplace (the sandbox's control)."""
    url = f"/sandbox/xvantage/marketplace/subscriptions/{subscription_id}"
    stack.sandbox.post(url, json=change).raise_for_status()


def xvantage(stack: Stack) -> dict[str, int]:
    """The sandbox's effects counted for the Xvantage face."""
    return stack.stats()["by_face"]["xvantage"]
