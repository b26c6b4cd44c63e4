"""The HTTP API on the REAL Temporal dev server (real clock, SQLite visibility: the
time-skipping test server has no list API): an order system's order to ACTIVE over HTTP, then
its subscriptions listed by domain, reseller and status, each key seeing its own only."""

# ruff: noqa: F811  (the dev server fixtures of test_subscriptions_devserver.py, used by name)

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.http_api import Api, api_for
from tests.support.stack import EXAMPLES, Stack
from tests.test_subscriptions_devserver import (  # noqa: F401  (fixtures)
    CONTOSO,
    RESULT_TIMEOUT,
    dev_env,
    dev_stack,
)
from workflows.order import LicenseOrderWorkflow

pytestmark = [pytest.mark.devserver, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def api(dev_stack: Stack) -> AsyncIterator[Api]:
    # Polling visibility 5 times a second is more than a key's default rate allows.
    settings = dev_stack.settings.model_copy(
        update={"api_rate_limit_per_minute": 6000, "api_rate_limit_burst": 100}
    )
    async with api_for(settings, dev_stack.registry, dev_stack.tracking_client) as api:
        yield api


async def listed(api: Api, who: str, count: int, **params: str) -> list[dict[str, Any]]:
    """GET /v1/subscriptions once it shows `count` rows (visibility is written just after the
    workflow's task), or what it shows after a while."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        answer = await api.call("GET", "/v1/subscriptions", who, params=params)
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_an_order_over_http_then_its_subscriptions_by_key(dev_stack: Stack, api: Api) -> None:
    order = json.loads((EXAMPLES / "order-create.json").read_text())
    order["order_id"] = f"T-{uuid.uuid4().hex[:12].upper()}"
    answer = await api.call("POST", "/v1/orders", "RSL-042", json=order)
    assert answer.status_code == 202, answer.text
    handle = dev_stack.env.client.get_workflow_handle_for(
        LicenseOrderWorkflow.run, answer.json()["workflow_id"]
    )
    assert (await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)).stage.value == "ACTIVE"
    [contoso] = dev_stack.registry.list_licenses(CONTOSO)

    [row] = await listed(api, "RSL-042", 1, domain=CONTOSO)
    assert (row["subscription_id"], row["reseller_id"], row["status"], row["seats"]) == (
        contoso.subscription_id,
        "RSL-042",
        "ACTIVE",
        10,
    )
    assert await listed(api, "ops", 1, reseller="RSL-042", status="ACTIVE") == [row]
    # Visibility shows it now: other keys and other filters see nothing.
    assert await listed(api, "RSL-077", 0, domain=CONTOSO) == []
    assert await listed(api, "RSL-077", 0) == []
    assert await listed(api, "RSL-042", 0, reseller="RSL-077") == []
    assert await listed(api, "RSL-042", 0, status="CANCELLED") == []
    bad = await api.call("GET", "/v1/subscriptions", "ops", params={"status": "GONE"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
