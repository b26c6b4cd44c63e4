"""The order path when parts fail: SMTP outages, a registry that goes away right after the
provider created a tenant, answers lost after the provider committed, slow provisioning, and
another reseller's tenant. Real parts throughout: the time-skipping server, the sandbox over
HTTP, the SMTP sink and SQLite; the faults are put into them (see tests/support/faults.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from csp_core.stages import OpsAttention, OrderStage
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from temporalutil.logging import configure_logging
from tests.conftest import SANDBOX_TOKEN
from tests.support.faults import ProviderWire, RegistryOutage
from tests.support.stack import Stack, example, running_stack
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


async def attention(handle: WorkflowHandle) -> list[str]:
    return list((await handle.describe()).typed_search_attributes.get(sa.OPS_ATTENTION) or [])


async def stage_attribute(handle: WorkflowHandle) -> str | None:
    return (await handle.describe()).typed_search_attributes.get(sa.ORDER_STAGE)


EMPTY = Payload()


async def search_attribute_upserts(handle: WorkflowHandle) -> list[tuple[datetime, dict]]:
    """(event time, fields) of each search attribute change the workflow made."""
    found = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            attrs = event.upsert_workflow_search_attributes_event_attributes
            found.append(
                (event.event_time.ToDatetime(), dict(attrs.search_attributes.indexed_fields))
            )
    return found


async def running(handle: WorkflowHandle) -> bool:
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


# ------------------------------------------------------------------------------- e-mail


async def test_smtp_down_for_more_than_a_day_never_holds_the_order(stack: Stack) -> None:
    order = example("order-create.json")
    stack.sink.stop()  # connection refused: a transient outage
    handle = await stack.submit(order)
    await stack.first_task_done(handle)

    await stack.env.sleep(DAY + 6 * HOUR)

    # The licenses are live and recorded: the order is ACTIVE although its e-mail is not out.
    assert await stage_attribute(handle) == "ACTIVE"
    assert stack.registry.get_order(order.order_id).stage is OrderStage.ACTIVE
    assert (await handle.query(LicenseOrderWorkflow.status)).stage is OrderStage.ACTIVE
    assert await running(handle)  # still trying to deliver the notice
    assert stack.mails(order.order_id) == []

    stack.sink.start()
    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert stack.mail_kinds(order.order_id) == ["order_active"]  # exactly once
    assert await attention(handle) == []


async def test_smtp_down_past_the_retry_horizon_flags_ops_and_keeps_the_stage(
    stack: Stack,
) -> None:
    order = example("order-create.json")
    stack.sink.stop()
    handle = await stack.submit(order)

    result = await stack.result(handle)  # the notice is given up after its horizon

    assert result.stage is OrderStage.ACTIVE
    assert await attention(handle) == [OpsAttention.NOTICE_UNDELIVERABLE.value]
    assert stack.registry.get_order(order.order_id).stage is OrderStage.ACTIVE
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "NOTICE_UNDELIVERABLE" in metadata.current_details
    assert f"order-{order.order_id}:active" in metadata.current_details
    stack.sink.start()
    assert stack.mails(order.order_id) == []


async def test_permanent_smtp_refusal_is_not_retried_and_flags_ops(stack: Stack) -> None:
    order = example("order-create.json")
    stack.sink.refuse(str(order.reseller.email), code=550)
    handle = await stack.submit(order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert [r.code for r in stack.sink.refused_attempts()] == [550]  # asked once, never again
    assert await attention(handle) == [OpsAttention.NOTICE_UNDELIVERABLE.value]
    assert stack.mails(order.order_id) == []


# ------------------------------------------------------------------------------- provider


async def test_registry_down_right_after_tenant_creation_loses_nothing(
    stack: Stack, wire: ProviderWire
) -> None:
    order = example("order-create.json")
    outage = RegistryOutage(stack.registry)
    wire.after[("POST", "/v1/customers")] = outage.begin  # the provider created it, then...
    handle = await stack.submit(order)
    await stack.first_task_done(handle)

    await stack.env.sleep(2 * HOUR)
    assert outage.active
    assert await attention(handle) == [OpsAttention.CREDENTIALS_UNRECORDED.value]
    assert await running(handle)
    assert stack.stats()["customers_created"] == 1

    outage.end()
    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert stack.stats()["customers_created"] == 1  # no orphan, no second tenant
    assert await attention(handle) == []
    username, password = stack.registry.reveal_credentials(order.order_id, stack.vault)
    assert username == "admin@contosomx.onmicrosoft.com"
    history = (await handle.fetch_history()).to_json()
    assert password.get_secret_value() not in history  # only the vault-sealed token travelled
    assert password.get_secret_value().encode() not in stack.registry_path.read_bytes()


async def test_answer_lost_after_the_tenant_was_created_is_recovered(
    stack: Stack, wire: ProviderWire
) -> None:
    order = example("order-create.json")
    wire.lose_next("POST", "/v1/customers")

    result = await stack.result(await stack.submit(order))

    assert result.stage is OrderStage.ACTIVE
    assert stack.stats()["customers_created"] == 1
    creates = [
        rid for method, path, rid in wire.request_ids if (method, path) == ("POST", "/v1/customers")
    ]
    assert len(creates) == 2 and creates[0] == creates[1]  # the retry asked the same question
    stack.registry.reveal_credentials(order.order_id, stack.vault)


async def test_answer_lost_after_placing_the_order_is_recovered(
    stack: Stack, wire: ProviderWire
) -> None:
    order = example("order-link-ours.json")
    wire.lose_next("POST", "/checkout", times=2)  # New Commerce: the cart's checkout orders

    result = await stack.result(await stack.submit(order))

    assert result.stage is OrderStage.ACTIVE
    assert stack.stats()["orders_created"] == 1  # placed once, though the caller asked thrice
    for step in ("/carts", "/checkout"):
        sent = [
            rid
            for method, path, rid in wire.request_ids
            if method == "POST" and path.endswith(step)
        ]
        assert len(sent) == 3 and len(set(sent)) == 1
    assert len(stack.registry.list_licenses("northwind.onmicrosoft.com")) == 2


@pytest.fixture
def slow_sandbox() -> Iterator[httpx.Client]:
    """A sandbox whose subscriptions take 4 s of real time to provision: with time skipping,
    hours of workflow time pass meanwhile."""
    with (
        serve_in_background(port=0, token=SANDBOX_TOKEN, provisioning_delay_seconds=4) as url,
        httpx.Client(base_url=url, timeout=10) as control,
    ):
        yield control


async def test_provisioning_slower_than_the_horizon_escalates_and_never_fails(
    ts_env: WorkflowEnvironment,
    slow_sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> None:
    async with running_stack(
        ts_env,
        sandbox=slow_sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="slow",
    ) as stack:
        stack.settings = stack.settings.model_copy(update={"provisioning_escalation_hours": 1})
        order = example("order-link-ours.json")
        handle = await stack.submit(order)

        result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    upserts = await search_attribute_upserts(handle)
    flags = [(at, fields["OpsAttention"]) for at, fields in upserts if "OpsAttention" in fields]
    assert len(flags) == 2  # raised past the horizon, cleared once provisioned
    assert b"PROVISIONING_SLOW" in flags[0][1].data
    activating = next(
        at for at, fields in upserts if b"ACTIVATING" in fields.get("OrderStage", EMPTY).data
    )
    raised_after = flags[0][0] - activating
    # At the horizon (event times differ by the workflow task's milliseconds), not before.
    assert abs(raised_after - HOUR) < timedelta(seconds=1)
    assert await attention(handle) == []


# ------------------------------------------------------------------------------- tenants


async def test_another_resellers_known_tenant_waits_for_that_resellers_acceptance(
    stack: Stack,
) -> None:
    first = example("order-link-ours.json")
    await stack.result(await stack.submit(first))
    assert stack.registry.tenant_resellers("northwind.onmicrosoft.com") == {"RSL-042"}

    other = example(
        "order-link-ours.json",
        reseller={"id": "RSL-077", "name": "Soluciones Bajío SA", "email": "ventas@bajio.mx"},
    )
    handle = await stack.submit(other)
    await stack.first_task_done(handle)
    await stack.env.sleep(3 * DAY)

    assert await stage_attribute(handle) == "AWAITING_PARTNER_ACCEPTANCE"
    assert stack.stats()["orders_created"] == 1  # nothing placed for RSL-077 yet
    assert stack.mail_kinds(other.order_id) == ["partner_invitation", "acceptance_reminder"]
    assert {m["To"] for m in stack.mails(other.order_id)} == {"ventas@bajio.mx"}

    await handle.signal(LicenseOrderWorkflow.partner_accepted)
    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert stack.stats()["orders_created"] == 2
    assert stack.registry.tenant_resellers("northwind.onmicrosoft.com") == {"RSL-042", "RSL-077"}


async def test_another_reseller_ordering_a_created_tenant_waits_too(stack: Stack) -> None:
    await stack.result(await stack.submit(example("order-create.json")))
    other = example(
        "order-create.json",
        reseller={"id": "RSL-077", "name": "Soluciones Bajío SA", "email": "ventas@bajio.mx"},
    )
    handle = await stack.submit(other)

    result = await stack.result(handle)  # nobody accepts: it expires

    assert result.stage is OrderStage.EXPIRED
    assert stack.stats()["customers_created"] == 1
    assert stack.stats()["orders_created"] == 1
    assert stack.registry.tenant_resellers("contosomx.onmicrosoft.com") == {"RSL-042"}


# ------------------------------------------------------------------------------- logs


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


async def test_generated_password_never_reaches_a_log_line(
    stack: Stack, wire: ProviderWire, log_lines: io.StringIO
) -> None:
    order = example("order-create.json")
    wire.lose_next("POST", "/v1/customers")  # a retry too: its path logs as well

    await stack.result(await stack.submit(order))

    _, password = stack.registry.reveal_credentials(order.order_id, stack.vault)
    logged = log_lines.getvalue()
    assert "tenant_created" in logged and "partner_center.call" in logged  # logs were read
    assert password.get_secret_value() not in logged
