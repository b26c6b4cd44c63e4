"""Subscription changes under Ingram, whose Xvantage API has none: the Update answers at once
that the change is pending with ops (the task in the answer and the details), nothing changes
until ops confirm it, the 168 h window is the deadline of a cancellation, and a declined change
is told to the reseller. Real parts: the Ingram adapter against the sandbox's Xvantage face,
where ops' manual work is the face's marketplace control."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle

from api import ops as ops_api
from csp_core.ops.tasks import OpsOperation, OpsTaskStatus
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.terms import term_end_instant
from csp_core.subscriptions.values import SubscriptionDetails
from temporalutil import search_attributes as sa
from tests.support import ingram as on_ingram
from tests.support.ingram import at_ingram, xvantage
from tests.support.stack import Stack
from tests.test_renewal_workflow import current_details, eventually, ops_attention
from tests.test_subscription_workflow import active_subscription, attributes, refusal, update
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
ingram = on_ingram.ingram  # the fixture: the stack on the Ingram adapter


async def details(handle: WorkflowHandle) -> SubscriptionDetails:
    return await handle.query(SubscriptionWorkflow.details)


def mails(stack: Stack, kind: str) -> list:
    return [m for m in stack.mails() if str(m["X-CSP-Kind"]) == kind]


async def _async(value):  # an awaitable for `eventually`
    return value


async def test_a_seat_change_under_ingram_is_pending_until_ops_confirm_it(ingram: Stack) -> None:
    handle, sub_id, _ = await active_subscription(ingram)

    answer = await update(handle, "set_seats", 15, id="seats-15")

    # Answered at once: pending with ops, nothing changed yet.
    [task] = answer.ops_tasks
    assert (answer.seats, task.operation, task.seats_before, task.seats) == (
        10, OpsOperation.CHANGE_SEATS, 10, 15
    )  # fmt: skip
    assert task.deadline == task.asked_at + timedelta(hours=24)  # an increase: no window limit
    assert (await attributes(handle)).get(sa.SEATS) == 10
    assert await ops_attention(handle) == ["OPS_ACTION_REQUIRED"]
    assert ingram.registry.get_subscription(sub_id).quantity == 10
    assert ingram.registry.list_seat_changes(sub_id) == []
    assert f"csp ops confirm {handle.id} {task.task_id}" in await current_details(handle)
    asked = (await eventually(lambda: _async(mails(ingram, "ops_task"))))[0]
    assert "Cambiar de 10 licencias a 15 licencias" in asked.get_content()
    # The same request again: the same answer, no second task.
    assert (await update(handle, "set_seats", 15, id="seats-15")).ops_tasks == [task]
    # Another change meanwhile: refused, with the pending one named.
    refused = await refusal(handle, "add_seats", 1, id="seats-more")
    assert task.task_id in refused.message and "waiting for ops" in refused.message

    at_ingram(ingram, sub_id, quantity=15)
    await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-SEATS-1")

    async def applied() -> SubscriptionDetails | None:
        found = await details(handle)
        return found if found.seats == 15 else None

    done = await eventually(applied)
    assert done.ops_tasks == [] and await ops_attention(handle) == []
    assert (await attributes(handle)).get(sa.SEATS) == 15
    assert ingram.registry.get_subscription(sub_id).quantity == 15
    [change] = ingram.registry.list_seat_changes(sub_id)
    assert (change.seats_before, change.seats_after, change.change_id) == (10, 15, "seats-15")
    assert xvantage(ingram)["quantity_changes"] == 1
    assert (await update(handle, "add_seats", 1, id="seats-more")).ops_tasks  # asked again: ok


async def test_a_cancellation_under_ingram_is_due_when_the_window_closes_and_can_be_declined(
    ingram: Stack,
) -> None:
    handle, sub_id, _ = await active_subscription(ingram)
    window_end = (await details(handle)).cancellable_until
    await ingram.env.sleep(window_end - timedelta(hours=2) - await ingram.env.get_current_time())

    answer = await update(handle, "cancel", id="cancel-1")

    [task] = answer.ops_tasks
    assert answer.status is SubscriptionStatus.ACTIVE and answer.cancelled_at is None
    assert task.operation is OpsOperation.CANCEL and task.deadline == window_end

    await ingram.env.sleep(window_end - await ingram.env.get_current_time())

    async def overdue() -> list[str]:
        flags = await ops_attention(handle)
        return flags if "OPS_TASK_OVERDUE" in flags else []

    await eventually(overdue)
    assert (await details(handle)).status is SubscriptionStatus.ACTIVE  # never taken as done
    assert ingram.registry.get_subscription(sub_id).status == "active"

    declined = await ops_api.decline_task(
        ingram.env.client, handle.id, task.task_id, "la ventana de 168 horas cerró antes"
    )
    assert declined.status is OpsTaskStatus.DECLINED
    told = (await eventually(lambda: _async(mails(ingram, "subscription_change_declined"))))[0]
    assert str(told["To"]) == "compras@integradoranorte.mx"
    assert "No fue posible realizar la cancelación" in told.get_content()
    assert "la ventana de 168 horas cerró antes" in told.get_content()
    assert await eventually(lambda: _no_flags(handle))
    assert (await details(handle)).status is SubscriptionStatus.ACTIVE
    assert xvantage(ingram)["subscriptions_cancelled"] == 0
    with pytest.raises(ops_api.OpsTaskRefused, match="already DECLINED"):
        await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "late")


async def _no_flags(handle: WorkflowHandle) -> bool:
    return await ops_attention(handle) == []


async def test_a_cancellation_ops_confirm_ends_the_subscription_and_tells_the_reseller(
    ingram: Stack,
) -> None:
    handle, sub_id, _ = await active_subscription(ingram)
    [task] = (await update(handle, "cancel", id="cancel-2")).ops_tasks

    at_ingram(ingram, sub_id, status="deleted")
    await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-CANCEL-9")
    final = await ingram.settle(handle)

    assert final.status is SubscriptionStatus.CANCELLED and final.cancelled_at is not None
    assert ingram.registry.get_subscription(sub_id).status == "cancelled"
    assert (await attributes(handle)).get(sa.SUBSCRIPTION_STATUS) == "CANCELLED"
    assert len(mails(ingram, "subscription_cancelled")) == 1
    assert xvantage(ingram)["subscriptions_cancelled"] == 1


async def test_auto_renew_confirmed_by_ops_is_recorded_and_a_provider_that_disagrees_is_noted(
    ingram: Stack,
) -> None:
    handle, sub_id, _ = await active_subscription(ingram)
    [task] = (await update(handle, "set_auto_renew", False, id="renew-off")).ops_tasks
    assert task.deadline == task.asked_at + timedelta(hours=72)

    # Ops confirm without the change showing at Ingram: their word stands, the gap is noted.
    await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-AR-1")

    async def applied() -> bool:
        return (await attributes(handle)).get(sa.AUTO_RENEW) is False

    await eventually(applied)
    assert ingram.registry.get_subscription(sub_id).auto_renew is False
    [noted] = await handle.query(SubscriptionWorkflow.ops_tasks)
    assert noted.provider_view == "the provider still shows auto-renew on"


async def test_a_change_still_with_ops_when_the_term_renews_is_carried_to_the_next_run(
    ingram: Stack,
) -> None:
    handle, sub_id, _ = await active_subscription(ingram)
    first_run = (await handle.describe()).run_id
    anniversary = term_end_instant((await details(handle)).term_ends_at)
    await ingram.env.sleep(anniversary - timedelta(hours=1) - await ingram.env.get_current_time())
    [task] = (await update(handle, "add_seats", 2, id="seats-late")).ops_tasks

    await ingram.env.sleep(anniversary + timedelta(seconds=1) - await ingram.env.get_current_time())

    async def renewed() -> bool:
        return (await handle.describe()).run_id != first_run

    await eventually(renewed)
    assert [t.task_id for t in (await details(handle)).ops_tasks] == [task.task_id]
    assert await ops_attention(handle) == ["OPS_ACTION_REQUIRED"]
    await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-SEATS-2")

    async def applied() -> bool:
        return (await details(handle)).seats == 12

    await eventually(applied)
    assert ingram.registry.get_subscription(sub_id).quantity == 12
    assert await ops_attention(handle) == []
