"""`csp subscriptions list` and adoption on the REAL Temporal dev server (real clock, SQLite
visibility: the time-skipping test server has no list API), with the worker's real activities,
the sandbox over HTTP, the SMTP sink and a SQLite registry; the CLI as a subprocess. The issue's
"Done when" under `make run`, as far as a test may go (dynamic ports, not `make run`'s)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.smtp_sink import SmtpSink
from sandbox.state import NORTHWIND_LEGACY_SUBSCRIPTION as LEGACY
from tests.conftest import SANDBOX_TOKEN
from tests.support import devserver
from tests.support.cli import Run, csp, stack_env
from tests.support.stack import Stack, example, running_stack

pytestmark = [pytest.mark.devserver, pytest.mark.asyncio(loop_scope="session")]

RESULT_TIMEOUT = 40.0
CONTOSO = "contosomx.onmicrosoft.com"
NORTHWIND = "northwind.onmicrosoft.com"


dev_env = devserver.dev_env  # one in-memory dev server per module


@pytest_asyncio.fixture(loop_scope="session")
async def dev_stack(
    dev_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    async with running_stack(
        dev_env,
        sandbox=sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="devserver-subscriptions",
    ) as stack:
        yield stack


async def listed(env: dict[str, str], *filters: str, count: int) -> list[dict[str, Any]]:
    """`csp subscriptions list --json`, once it shows `count` rows (visibility is written just
    after the workflow's task)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        result = await csp(env, "subscriptions", "list", *filters, "--json")
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def temporal_list(stack: Stack, query: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(devserver.TEMPORAL_CLI),
        "workflow",
        "list",
        "--address",
        stack.env.client.service_client.config.target_host,
        "--query",
        query,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_ops_find_subscriptions_by_domain_reseller_and_status(dev_stack: Stack) -> None:
    stack = dev_stack
    env = stack_env(stack)
    for name in ("order-create.json", "order-link-ours.json"):
        handle = await stack.submit(example(name))
        assert (await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)).stage.value == "ACTIVE"
    [contoso] = stack.registry.list_licenses(CONTOSO)

    # The query, as ops type it.
    query = f"SubscriptionStatus='ACTIVE' AND CustomerDomain='{CONTOSO}'"
    found = await temporal_list(stack, query)
    assert found.returncode == 0, found.stderr
    assert f"subscription-{contoso.subscription_id}" in found.stdout

    [row] = await listed(env, "--domain", CONTOSO, count=1)
    assert row | {"status": "ACTIVE", "seats": 10, "workflow_status": "RUNNING"} == row
    assert (row["subscription_id"], row["reseller_id"]) == (contoso.subscription_id, "RSL-042")

    adopted = await csp(env, "subscriptions", "adopt", "--domain", NORTHWIND)
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout.startswith(f"{NORTHWIND}: 1 adopted, 2 already managed, 0 skipped")
    # Real clock: the legacy subscription was bought 10 days ago, its window closed 3 days ago.
    refused = await csp(env, "subscription", "seats", LEGACY, "--quantity", "7")
    assert refused.returncode == 3, refused.stderr
    assert "that window ended at" in refused.stderr
    added = await csp(env, "subscription", "seats", LEGACY, "--add", "1")
    assert added.returncode == 0, added.stderr

    northwind = await listed(env, "--domain", NORTHWIND, count=3)
    assert {r["subscription_id"] for r in northwind} >= {LEGACY}
    assert len(northwind) == 3
    [legacy] = [r for r in northwind if r["subscription_id"] == LEGACY]
    assert legacy["status"] == "ACTIVE"
    by_reseller = await listed(env, "--reseller", "RSL-042", count=4)
    assert {r["domain"] for r in by_reseller} == {CONTOSO, NORTHWIND}

    cancelled = await csp(env, "subscription", "cancel", contoso.subscription_id)
    assert cancelled.returncode == 0, cancelled.stderr
    [gone] = await listed(env, "--status", "cancelled", count=1)
    assert (gone["subscription_id"], gone["status"]) == (contoso.subscription_id, "CANCELLED")
    text = await csp(env, "subscriptions", "list", "--domain", CONTOSO)
    zone_note, header, line = text.stdout.strip().splitlines()
    assert "America/Mexico_City" in zone_note and "cancellable until" in header
    assert line.split()[:4] == [CONTOSO, contoso.subscription_id, "CANCELLED", "10"]
