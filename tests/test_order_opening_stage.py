"""An order shows its first stage from the moment it starts: the order system's start sets the
OrderStage search attribute to it (api/orders.py), so the workflow's first task does not replace
it (one upsert and its visibility write less per order, issue 11). An order started the old way,
at RECEIVED, still has its first stage set by the workflow. Real parts: the time-skipping
server, the sandbox over HTTP, the SMTP sink and SQLite."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from csp_core.orders.models import order_workflow_id
from csp_core.orders.provisioning import OrderRequest
from csp_core.stages import OrderStage
from temporalutil import search_attributes as sa
from tests.support.stack import Stack, example
from tests.test_order_activation import stages_shown
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def stage_at_start(handle: WorkflowHandle) -> str | None:
    """The OrderStage the workflow was started with (what ops see before its first task)."""
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    field = started.search_attributes.indexed_fields.get("OrderStage")
    return field.data.decode().strip('"') if field is not None else None


@pytest.mark.parametrize(
    ("example_name", "opening"),
    [
        ("order-link-ours.json", OrderStage.LINKING_TENANT),
        ("order-create.json", OrderStage.CREATING_TENANT),
    ],
)
async def test_a_submitted_order_starts_at_its_opening_stage(
    stack: Stack, example_name: str, opening: OrderStage
) -> None:
    handle = await stack.submit(example(example_name))

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert await stage_at_start(handle) == opening.value
    assert await stages_shown(handle) == ["PLACING_ORDER", "ACTIVE"]


async def test_an_order_started_at_received_is_moved_to_its_opening_stage(stack: Stack) -> None:
    """A starter that still sets RECEIVED (an older order system): the workflow sets the first
    stage itself, as before."""
    order = example("order-link-ours.json")
    started = await stack.env.client.start_workflow(
        LicenseOrderWorkflow.run,
        OrderRequest(order=order),
        id=order_workflow_id(order.order_id),
        task_queue=stack.task_queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(sa.ORDER_STAGE, OrderStage.RECEIVED.value)]
        ),
    )
    stack.started.append(started.id)
    # A plain handle: stack.result lets the test server skip time (a started handle would too).
    handle = stack.env.client.get_workflow_handle_for(
        LicenseOrderWorkflow.run, started.id, run_id=started.result_run_id
    )

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert await stage_at_start(handle) == "RECEIVED"
    assert await stages_shown(handle) == ["LINKING_TENANT", "PLACING_ORDER", "ACTIVE"]
