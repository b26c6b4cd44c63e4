"""End to end on the REAL Temporal dev server (real clock, SQLite visibility), with the worker's
real activities against the Partner Center sandbox over HTTP, an SMTP sink and a SQLite
registry: the three example orders as an order system submits them, and a month of renewals
as the schedule and ops start them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api import orders as order_api
from api import renewals as renewal_api
from csp_core.registry import Registry
from csp_core.renewals.billing import open_period, period_of, previous_period
from csp_core.renewals.values import (
    CycleResult,
    RenewalStatus,
    renewal_cycle_queue,
    renewal_workflow_id,
)
from csp_core.stages import OrderStage, PaymentStatus
from csp_core.timezones import BUSINESS_TZ
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from tests.support.devserver import dev_server
from tests.support.stack import Stack, example, running_stack
from workflows.order import LicenseOrderWorkflow

pytestmark = [pytest.mark.devserver, pytest.mark.asyncio(loop_scope="session")]

SANDBOX_TOKEN = "devserver-token"
# Long enough that await_provisioning sees "pending" once and polls by retry, as in production.
PROVISIONING_DELAY = 0.5
RESULT_TIMEOUT = 40.0


@pytest.fixture(scope="module")
def temporal_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("temporal") / "temporal.db"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev_env(temporal_db: Path) -> AsyncIterator[WorkflowEnvironment]:
    """The dev server file-backed with WAL, like `make run`."""
    async with dev_server(temporal_db) as env:
        yield env


@pytest.fixture(scope="module")
def delayed_sandbox_url() -> Iterator[str]:
    with serve_in_background(
        port=0, token=SANDBOX_TOKEN, provisioning_delay_seconds=PROVISIONING_DELAY
    ) as url:
        yield url


@pytest.fixture
def delayed_sandbox(delayed_sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=delayed_sandbox_url, timeout=10) as control:
        control.post("/sandbox/reset").raise_for_status()
        yield control


@pytest_asyncio.fixture(loop_scope="session")
async def dev_stack(
    dev_env: WorkflowEnvironment,
    delayed_sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    """A worker with the real activities on its own task queue (tests/support/stack.py)."""
    async with running_stack(
        dev_env,
        sandbox=delayed_sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="devserver",
    ) as stack:
        yield stack


async def waiting_for_acceptance(
    client: Client, order_id: str, patience: float = 15.0
) -> list[str]:
    """Workflow ids an operator finds with the Web UI filter for orders awaiting acceptance."""
    query = f"OrderStage='{OrderStage.AWAITING_PARTNER_ACCEPTANCE.value}' AND OrderId='{order_id}'"
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        found = [wf.id async for wf in client.list_workflows(query)]
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def current_details(handle: WorkflowHandle) -> str:
    """What the Web UI shows as the workflow's current details (`temporal workflow metadata`)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def test_three_examples_end_to_end_on_the_dev_server(
    dev_stack: Stack, temporal_db: Path
) -> None:
    stack, client = dev_stack, dev_stack.env.client
    create = example("order-create.json")
    ours = example("order-link-ours.json")
    invite = example("order-link-invite.json")
    handles = {order.order_id: await stack.submit(order) for order in (create, ours, invite)}
    invite_handle = handles[invite.order_id]

    # The link-invite order waits for the client, findable by the ops filter.
    assert await waiting_for_acceptance(client, invite.order_id) == [invite.workflow_id]
    waiting = await invite_handle.query(LicenseOrderWorkflow.status)
    assert waiting.stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE
    details = await current_details(invite_handle)
    assert "AWAITING_PARTNER_ACCEPTANCE" in details and invite.order_id in details
    # The invitation goes out right after the stage is set: give the SMTP round trip a moment.
    for _ in range(100):
        if stack.mail_kinds(invite.order_id):
            break
        await asyncio.sleep(0.05)
    assert stack.mail_kinds(invite.order_id) == ["partner_invitation"]

    await order_api.accept_partner(client, invite.order_id, "confirmado por teléfono")
    results = await asyncio.wait_for(
        asyncio.gather(*(handle.result() for handle in handles.values())), RESULT_TIMEOUT
    )

    assert [r.stage for r in results] == [OrderStage.ACTIVE] * 3
    assert await waiting_for_acceptance(client, invite.order_id, patience=0) == []
    for order in (create, ours, invite):
        handle = handles[order.order_id]
        described = await handle.describe()
        assert described.typed_search_attributes.get(sa.ORDER_STAGE) == "ACTIVE"
        assert await described.static_summary() == order_api.summary(order)
        assert (await current_details(handle)).startswith("**ACTIVE**")
    assert stack.mail_kinds(create.order_id) == ["order_active"]
    assert stack.mail_kinds(ours.order_id) == ["order_active"]
    assert stack.mail_kinds(invite.order_id) == ["partner_invitation", "order_active"]

    licenses: dict[str, list[tuple[str, int, str]]] = {}
    for row in stack.registry.list_licenses():
        licenses.setdefault(row.domain, []).append((row.sku, row.quantity, row.status))
    assert {domain: sorted(rows) for domain, rows in licenses.items()} == {
        "contosomx.onmicrosoft.com": [("CFQ7TTC0LH18:0001", 10, "active")],
        "northwind.onmicrosoft.com": [
            ("CFQ7TTC0LCHC:0002", 5, "active"),
            ("CFQ7TTC0LDPB:0001", 25, "active"),
        ],
        "fabrikam.onmicrosoft.com": [("CFQ7TTC0LH18:0001", 40, "active")],
    }

    # Submitting every order again touches nothing at the provider.
    before = stack.stats()
    assert (before["customers_created"], before["orders_created"]) == (1, 3)
    for order in (create, ours, invite):
        again = await order_api.submit_order(client, stack.registry, order, stack.settings)
        assert (again.workflow_id, again.created) == (order.workflow_id, False)
        assert again.already_processed  # answered from the registry
    await asyncio.sleep(0.5)
    assert stack.stats() == before

    # The new tenant's admin password is only in the vault, encrypted.
    username, password = stack.registry.reveal_credentials(create.order_id, stack.vault)
    secret = password.get_secret_value()
    assert username == "admin@contosomx.onmicrosoft.com" and len(secret) >= 8
    for handle in handles.values():
        assert secret not in (await handle.fetch_history()).to_json()
    assert all(secret not in m.as_string() for m in stack.mails())
    for db in (stack.registry_path, temporal_db):
        files = sorted(db.parent.glob(f"{db.name}*"))  # the database and its WAL/shm files
        assert db in files
        assert all(secret.encode() not in path.read_bytes() for path in files), db.name


async def visible(client: Client, query: str, count: int, patience: float = 15.0) -> list[str]:
    """Workflow ids matching a visibility query, once there are `count` of them."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        found = [wf.id async for wf in client.list_workflows(query)]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_monthly_schedule_backfill_and_payment_on_the_dev_server(dev_stack: Stack) -> None:
    """The schedule in Mexico City time; a missed period backfilled (its cutoff is past, so its
    charge is at risk at once); the open period run by hand; a payment turns one PAID."""
    stack, client, settings = dev_stack, dev_stack.env.client, dev_stack.settings
    policy = renewal_api.renewal_policy(settings)
    bought = await asyncio.wait_for(
        (await stack.submit(example("order-create.json"))).result(), RESULT_TIMEOUT
    )
    subscription_id = bought.subscription_ids[0]
    now = datetime.now(UTC)
    # A client of ours since three months ago: it owes the missed period too.
    stack.registry.set_subscription_status(
        subscription_id, "active", activated_at=now - timedelta(days=92)
    )

    assert await renewal_api.ensure_schedule(client, settings) == "created"
    assert await renewal_api.ensure_schedule(client, settings) == "updated"
    schedule = await client.get_schedule_handle(renewal_api.SCHEDULE_ID).describe()
    spec = schedule.schedule.spec
    assert spec.time_zone_name == "America/Mexico_City"
    calendar = spec.calendars[0]
    assert (calendar.day_of_month[0].start, calendar.hour[0].start) == (1, 8)
    assert schedule.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    assert schedule.schedule.policy.catchup_window == timedelta(days=7)
    next_run = schedule.info.next_action_times[0].astimezone(BUSINESS_TZ)
    assert (next_run.day, next_run.hour, next_run.minute) == (1, 8, 0)

    missed = previous_period(period_of(now))
    await renewal_api.backfill(client, missed, settings)
    [cycle_id] = await visible(client, "WorkflowType='RenewalCycleWorkflow'", 1)
    cycle = await asyncio.wait_for(
        client.get_workflow_handle(cycle_id, result_type=CycleResult).result(), RESULT_TIMEOUT
    )
    assert (cycle.period, cycle.renewals_started) == (missed, 1)
    described = await client.get_workflow_handle(cycle_id).describe()
    assert described.task_queue == renewal_cycle_queue(settings.task_queue)  # its own queue
    at_risk = f"PaymentStatus='AT_RISK' AND BillingPeriod='{missed}'"
    assert await visible(client, at_risk, 1) == [renewal_workflow_id(subscription_id, missed)]

    current = open_period(now, policy)
    handle = await renewal_api.run_period(client, current, settings)
    assert (await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)).renewals_started == 1
    pending = f"PaymentStatus='PENDING' AND BillingPeriod='{current}'"
    renewal_id = renewal_workflow_id(subscription_id, current)
    assert await visible(client, pending, 1) == [renewal_id]

    paid = await renewal_api.record_payment(
        client, stack.registry, subscription_id, current, "SPEI-E2E"
    )
    assert paid.newly_paid and paid.workflow_signalled
    status = await asyncio.wait_for(
        client.get_workflow_handle(renewal_id, result_type=RenewalStatus).result(), RESULT_TIMEOUT
    )
    assert status.status is PaymentStatus.PAID and not status.paid_late
    assert await visible(client, f"PaymentStatus='PAID' AND BillingPeriod='{current}'", 1) == [
        renewal_id
    ]
    await client.get_schedule_handle(renewal_api.SCHEDULE_ID).delete()
