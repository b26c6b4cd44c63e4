"""A renewal's notices since the `renewal-lean` patch (workflows/renewal_notices.py): retried
for days while the mail server is away, flagged for ops at once when it refuses for good,
sent once; either way the ladder goes on. And the shape a new renewal opens in."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api import renewals as renewal_api
from csp_core.renewals.billing import next_period, period_of
from csp_core.renewals.values import CycleResult, renewal_workflow_id
from csp_core.stages import OpsAttention, PaymentStatus
from tests.support.stack import Stack, example
from tests.test_renewal_workflow import (
    active_subscription,
    advance_to,
    eventually,
    kinds,
    local,
    now,
    ops_attention,
    status,
)
from workflows.renewal import RenewalPaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def open_next_period(stack: Stack, subscription_id: str):  # -> (period, handle)
    period = next_period(period_of(await now(stack)))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    handle = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(subscription_id, period)
    )
    stack.started.append(handle.id)
    await stack.first_task_done(handle)
    return period, handle


async def test_a_notice_refused_for_good_is_flagged_at_once_and_asked_once(stack: Stack) -> None:
    subscription_id = await active_subscription(stack)
    reseller = str(example("order-create.json").reseller.email)
    stack.sink.refuse(reseller, code=550)

    period, handle = await open_next_period(stack, subscription_id)

    assert await eventually(lambda: ops_attention(handle)) == [
        OpsAttention.NOTICE_UNDELIVERABLE.value
    ]
    assert [r.code for r in stack.sink.refused_attempts()] == [550]  # never asked again
    assert (await status(handle)).status is PaymentStatus.PENDING
    await advance_to(stack, local(period, 15, 9, 0, 1))
    assert (await status(handle)).status is PaymentStatus.REMINDED  # the ladder goes on


async def test_a_notice_while_the_mail_server_is_away_is_sent_once_it_is_back(
    stack: Stack,
) -> None:
    subscription_id = await active_subscription(stack)
    stack.sink.stop()
    try:
        period, handle = await open_next_period(stack, subscription_id)
        await stack.env.sleep(timedelta(minutes=30))  # retried by the activity meanwhile
    finally:
        stack.sink.start()
    await stack.env.sleep(timedelta(hours=2))  # the next retry (backoff up to an hour) sends it

    async def notice_sent() -> bool:
        return kinds(stack, subscription_id, period) == ["renewal_notice"]

    assert await eventually(notice_sent)
    assert await ops_attention(handle) == []
    assert (await status(handle)).status is PaymentStatus.PENDING


async def test_a_renewal_opens_in_14_events_with_its_notice_sent(stack: Stack) -> None:
    """The shape the renewal-lean patch gives a new renewal (its saved histories: v8): no
    opening upsert (the cycle started it with its search attributes), one patch marker (and
    its upsert) instead of three, the payment look-up, the timer, the notice's activity."""
    from temporalio.api.enums.v1 import EventType

    subscription_id = await active_subscription(stack)
    period, handle = await open_next_period(stack, subscription_id)

    async def notice_sent() -> bool:
        return kinds(stack, subscription_id, period) == ["renewal_notice"]

    assert await eventually(notice_sent)

    async def opened() -> list[int]:
        events = [e.event_type for e in (await handle.fetch_history()).events]
        done = events.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 2
        return events if done else []

    events = await eventually(opened)
    assert events.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 2  # the patch, the look-up
    assert events.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) == 1
    assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1  # the notice
    assert len(events) == 14
