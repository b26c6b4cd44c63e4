"""An order id is remembered beyond Temporal's retention: the registry judges a resubmit.

Against a real time-skipping server and a SQLite registry. "After retention" is the state
Temporal leaves behind once it has dropped a closed run: the registry holds the order, the
server has no workflow for it.

The server is this module's own: some tests start an order workflow with no worker (it just
waits, visibly), and such a workflow would keep the shared server from skipping time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api import orders as order_api
from csp_core.orders.models import Order, parse_order
from csp_core.registry import Registry
from csp_core.settings import Settings
from csp_core.stages import OrderStage
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from tests.conftest import TEST_SERVER

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "order-create.json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEST_SERVER, data_converter=DATA_CONVERTER
    )
    async with env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={k.name: k.indexed_value_type.value for k in sa.ALL},
            )
        )
        yield env


def fresh_order() -> Order:
    """The example order under an id no other test on the shared server has used."""
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["order_id"] = f"RESUB-{uuid.uuid4().hex[:12]}"
    return parse_order(data)


@pytest.fixture
def settings() -> Settings:
    # No worker listens on this queue: a workflow that does start just waits, visibly.
    return Settings(_env_file=None, task_queue=f"resubmit-{uuid.uuid4().hex[:8]}")  # type: ignore[call-arg]


def record(registry: Registry, order: Order, fingerprint: str | None = None) -> None:
    registry.record_order(
        order.order_id,
        fingerprint or order.fingerprint(),
        order.reseller.id,
        order.domain,
        order.tenant.mode.value,
    )


async def workflow_exists(client: Client, order: Order) -> bool:
    try:
        await client.get_workflow_handle(order.workflow_id).describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND, err
        return False
    return True


@pytest.mark.parametrize(
    ("stage", "detail", "provider_order_id", "answer"),
    [
        (OrderStage.ACTIVE, "10 licencias activas", "PO-7781", "ACTIVE (provider order PO-7781)"),
        (OrderStage.FAILED, "the provider refused the tenant", None, "FAILED (the provider ref"),
        (OrderStage.CANCELLED, "el cliente desistió", None, "CANCELLED (el cliente desistió)"),
    ],
    ids=["active", "failed", "cancelled"],
)
async def test_a_processed_order_is_answered_from_the_registry_and_nothing_starts(
    ts_env: WorkflowEnvironment,
    registry: Registry,
    settings: Settings,
    stage: OrderStage,
    detail: str,
    provider_order_id: str | None,
    answer: str,
) -> None:
    order = fresh_order()
    record(registry, order)
    registry.set_order_stage(order.order_id, stage, detail, provider_order_id=provider_order_id)
    assert not await workflow_exists(ts_env.client, order)  # retention dropped the run

    result = await order_api.submit_order(ts_env.client, registry, order, settings)

    assert result.already_processed
    assert result.created is False and result.run_id is None
    assert result.recorded is not None and result.recorded.stage is stage
    assert result.describe().startswith(f"{order.order_id}: already processed: {answer}")
    assert not await workflow_exists(ts_env.client, order)  # nothing was started


async def test_an_amount_written_differently_is_the_same_processed_order(
    ts_env: WorkflowEnvironment, registry: Registry, settings: Settings
) -> None:
    order = fresh_order()
    record(registry, order)  # as submitted first: "129.00"
    registry.set_order_stage(order.order_id, OrderStage.ACTIVE, "ok", provider_order_id="PO-1")
    data = order.model_dump(mode="json")
    data["items"][0]["unit_price"] = "129"

    result = await order_api.submit_order(ts_env.client, registry, parse_order(data), settings)

    assert result.already_processed
    assert not await workflow_exists(ts_env.client, order)


async def test_the_same_id_with_other_content_is_refused_after_retention(
    ts_env: WorkflowEnvironment, registry: Registry, settings: Settings
) -> None:
    order = fresh_order()
    record(registry, order)
    registry.set_order_stage(order.order_id, OrderStage.ACTIVE, "ok", provider_order_id="PO-1")
    changed = order.model_copy(
        update={"items": [order.items[0].model_copy(update={"quantity": 11})]}
    )

    with pytest.raises(order_api.OrderRefused) as refused:
        await order_api.submit_order(ts_env.client, registry, changed, settings)

    message = str(refused.value)
    assert f"order {order.order_id} was already submitted with different content" in message
    assert "ACTIVE" in message
    assert "submit the change under a new order id" in message
    assert not await workflow_exists(ts_env.client, order)


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    yield registry
    registry.dispose()


async def test_the_registry_refuses_other_content_whatever_temporal_says(
    ts_env: WorkflowEnvironment, registry: Registry, empty_registry: Registry, settings: Settings
) -> None:
    """A run whose memo matches the new content does not outvote the registry."""
    order = fresh_order()
    record(registry, order, fingerprint="0" * 64)  # first submitted with other content
    # A run carrying this content, as Temporal alone would have judged (an empty registry).
    first = await order_api.submit_order(ts_env.client, empty_registry, order, settings)
    try:
        assert first.created

        with pytest.raises(order_api.OrderRefused, match="different content"):
            await order_api.submit_order(ts_env.client, registry, order, settings)
    finally:
        await ts_env.client.get_workflow_handle(order.workflow_id).terminate("test done")


async def test_an_order_still_in_progress_joins_its_running_workflow(
    ts_env: WorkflowEnvironment, registry: Registry, settings: Settings
) -> None:
    order = fresh_order()
    first = await order_api.submit_order(ts_env.client, registry, order, settings)
    record(registry, order)  # the workflow's first activity records it as RECEIVED
    registry.set_order_stage(order.order_id, OrderStage.AWAITING_PARTNER_ACCEPTANCE, "waiting")
    try:
        again = await order_api.submit_order(ts_env.client, registry, order, settings)

        assert not again.already_processed
        assert (again.created, again.run_id) == (False, first.run_id)
        assert again.describe() == (
            f"{order.workflow_id}: already submitted; same workflow (run {first.run_id})"
        )
        description = await ts_env.client.get_workflow_handle(order.workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
    finally:
        await ts_env.client.get_workflow_handle(order.workflow_id).terminate("test done")


async def test_concurrent_submits_of_a_new_order_start_one_workflow(
    ts_env: WorkflowEnvironment, registry: Registry, settings: Settings
) -> None:
    """An order system retrying at once: one submit starts the workflow, the others join it."""
    order = fresh_order()
    try:
        results = await asyncio.gather(
            *(order_api.submit_order(ts_env.client, registry, order, settings) for _ in range(5))
        )

        assert [r.created for r in results].count(True) == 1
        assert len({r.run_id for r in results}) == 1
        description = await ts_env.client.get_workflow_handle(order.workflow_id).describe()
        assert description.run_id == results[0].run_id
    finally:
        await ts_env.client.get_workflow_handle(order.workflow_id).terminate("test done")
