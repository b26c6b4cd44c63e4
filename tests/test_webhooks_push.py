"""The local stack on push: the sandbox sends its events, signed the real way, to the HTTP API
(uvicorn on a free port), which tells the workflows on the time-skipping test server. While a
test waits for the outcome the test server's clock is not skipped: what happens comes from the
event, not from a poll or a retry that time skipping brought forward."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from tests.conftest import SANDBOX_TOKEN
from tests.support.http_api import serving
from tests.support.stack import example
from tests.support.webhooks import (
    Pushed,
    eventually,
    free_socket,
    pushed_stack,
    stage_of,
    updates_and_signals,
)
from workflows.order import LicenseOrderWorkflow
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
FABRIKAM = "fabrikam.onmicrosoft.com"


@pytest_asyncio.fixture(loop_scope="session")
async def pushed(
    ts_env: WorkflowEnvironment, smtp_sink: SmtpSink, registry: Registry, registry_path: Path
) -> AsyncIterator[Pushed]:
    async with pushed_stack(ts_env, smtp_sink, registry, registry_path) as pushed:
        yield pushed


async def test_the_clients_click_makes_the_waiting_order_active_with_no_signal_by_hand(
    pushed: Pushed,
) -> None:
    stack = pushed.stack
    handle = await stack.submit(example("order-link-invite.json"))
    await stack.first_task_done(handle)
    assert await eventually(lambda: _at(handle, "AWAITING_PARTNER_ACCEPTANCE"))
    assert await updates_and_signals(handle) == []

    click = pushed.sandbox.post(f"/sandbox/customers/{FABRIKAM}/accept-relationship")

    assert click.status_code == 200, click.text
    assert click.json()["event"] == "queued"
    assert await eventually(lambda: _at(handle, "ACTIVE")), await stage_of(handle)
    assert await updates_and_signals(handle) == ["accept_partner"]  # from the event
    assert pushed.stats()["events_sent"] == 1


async def test_a_provider_change_of_a_subscription_is_taken_over_at_once(pushed: Pushed) -> None:
    stack = pushed.stack
    handle = await stack.submit(example("order-link-ours.json"))
    await stack.first_task_done(handle)
    assert await eventually(lambda: _at(handle, "ACTIVE"))
    status = await handle.query(LicenseOrderWorkflow.status)
    subscription_id = status.subscription_ids[0]
    sub = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{subscription_id}"
    )
    assert await eventually(lambda: _sub_status(sub, "ACTIVE"))

    # Someone suspends it at the provider, outside this system (by hand in a marketplace).
    changed = pushed.sandbox.post(
        f"/sandbox/xvantage/marketplace/subscriptions/{subscription_id}",
        json={"status": "suspended"},
    )

    assert changed.status_code == 200, changed.text
    assert await eventually(lambda: _sub_status(sub, "SUSPENDED")), await sub.query(
        SubscriptionWorkflow.details
    )
    assert "provider_subscription_changed" in await updates_and_signals(sub)


@pytest.fixture
def slow_provisioning() -> dict[str, Any]:
    """Provisioning that takes an hour of real time, unless the sandbox is told to finish."""
    return {"provisioning_delay_seconds": 3600}


async def test_ingrams_order_status_event_wakes_provisioning_before_the_next_retry(
    ts_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
    slow_provisioning: dict[str, Any],
) -> None:
    async with pushed_stack(
        ts_env, smtp_sink, registry, registry_path, ingram=True, **slow_provisioning
    ) as pushed:
        stack = pushed.stack
        handle = await stack.submit(example("order-create.json"))
        await stack.first_task_done(handle)
        assert await eventually(lambda: _at(handle, "ACTIVATING"))
        # Two hours of provisioning retries: their backoff is at its 15-minute cap now.
        await stack.env.sleep(timedelta(hours=2))
        assert await stage_of(handle) == "ACTIVATING"
        before = await stack.env.get_current_time()

        pushed.sandbox.post("/sandbox/provisioning/complete").raise_for_status()

        assert await eventually(lambda: _at(handle, "ACTIVE")), await stage_of(handle)
        waited = await stack.env.get_current_time() - before
        assert waited < timedelta(minutes=1), waited  # not the next retry, 15 min away
        assert "provider_order_changed" in await updates_and_signals(handle)
        assert pushed.stats()["events_sent"] >= 1


async def test_the_sandbox_retries_an_event_while_the_receiver_is_down() -> None:
    received: list[dict[str, Any]] = []
    receiver = FastAPI()

    @receiver.post("/hooks/partner-center")
    async def partner_center(request: Request) -> dict[str, str]:
        received.append({"headers": dict(request.headers), "body": await request.json()})
        return {"status": "ok"}

    sock = free_socket()  # bound, not listening: connections are refused meanwhile
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    with serve_in_background(
        port=0, token=SANDBOX_TOKEN, events_url=url, events_first_delay_s=0.2
    ) as sandbox_url:
        async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as control:

            async def retried() -> bool:
                return (await control.get("/sandbox/stats")).json()["events_retried"] >= 2

            click = await control.post(f"/sandbox/customers/{FABRIKAM}/accept-relationship")
            assert click.status_code == 200, click.text
            assert await eventually(retried)
            assert received == []

            async with serving(receiver, sock):
                assert await eventually(lambda: received, 20)
                await asyncio.sleep(0.5)

            stats = (await control.get("/sandbox/stats")).json()
    assert len(received) == 1
    assert received[0]["body"]["EventName"] == "reseller-relationship-accepted-by-customer"
    assert received[0]["headers"]["authorization"].startswith("Signature ")
    assert (
        received[0]["headers"]["x-ms-certificate-url"]
        == f"{sandbox_url}/sandbox/events/certificate"
    )
    assert (stats["events_sent"], stats.get("events_failed", 0)) == (1, 0)


async def _at(handle: Any, stage: str) -> bool:
    return await stage_of(handle) == stage


async def _sub_status(handle: Any, status: str) -> bool:
    return (await handle.query(SubscriptionWorkflow.details)).status.value == status
