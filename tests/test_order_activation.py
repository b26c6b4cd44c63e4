"""Activation: an order the provider provisions at once is activated by the place step itself
(one step fewer for the workflow, issue 11); when that try fails on the way, the activation step
with its own retries takes over, and nothing is done twice. Real parts: the time-skipping
server, the sandbox over HTTP, the SMTP sink and SQLite."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from csp_core.stages import OrderStage
from csp_core.subscriptions.values import subscription_workflow_id
from tests.support.faults import ProviderWire
from tests.support.stack import Stack, example

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def activities_run(handle: WorkflowHandle) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in (await handle.fetch_history()).events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


async def stages_shown(handle: WorkflowHandle) -> list[str]:
    """The OrderStage search attribute's values, in the order the workflow set them."""
    shown = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "OrderStage" in fields.indexed_fields:
                shown.append(fields.indexed_fields["OrderStage"].data.decode().strip('"'))
    return shown


async def licenses_running(stack: Stack, domain: str) -> list[str]:
    """The licenses on `domain` whose SubscriptionWorkflow runs."""
    running = []
    for lic in stack.registry.list_licenses(domain):
        handle = stack.env.client.get_workflow_handle(subscription_workflow_id(lic.subscription_id))
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            running.append(lic.subscription_id)
    return running


async def test_an_order_provisioned_at_once_is_activated_by_the_place_step(stack: Stack) -> None:
    order = example("order-link-ours.json")
    handle = await stack.submit(order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert await activities_run(handle) == ["open_order", "place"]
    assert "ACTIVATING" not in await stages_shown(handle)
    recorded = stack.registry.get_order(order.order_id)
    assert recorded is not None and recorded.stage == "ACTIVE"
    assert recorded.provider_order_id  # the ACTIVE write names the provider's order too
    licenses = stack.registry.list_licenses("northwind.onmicrosoft.com")
    assert len(licenses) == 2 and {lic.status for lic in licenses} == {"active"}
    assert len(await licenses_running(stack, "northwind.onmicrosoft.com")) == 2
    assert stack.mail_kinds(order.order_id) == ["order_active"]


async def test_a_failed_try_at_once_leaves_activation_to_its_step(
    stack: Stack, wire: ProviderWire
) -> None:
    order = example("order-link-ours.json")
    # The place step's look at provisioning loses its answer: the try at once gives up.
    wire.lose_next("GET", "/provisioningstatus")
    handle = await stack.submit(order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert await activities_run(handle) == ["open_order", "place", "provision_and_activate"]
    assert (await stages_shown(handle))[-2:] == ["ACTIVATING", "ACTIVE"]
    assert stack.stats()["orders_created"] == 1
    licenses = stack.registry.list_licenses("northwind.onmicrosoft.com")
    assert len(licenses) == 2 and {lic.status for lic in licenses} == {"active"}
    assert len(await licenses_running(stack, "northwind.onmicrosoft.com")) == 2
    assert stack.mail_kinds(order.order_id) == ["order_active"]
