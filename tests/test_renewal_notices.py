"""A renewal's notices since the `renewal-lean` patch (workflows/renewal_notices.py): retried
for days while the mail server is away, flagged for ops at once when it refuses for good,
sent once; either way the ladder goes on. The shape a new renewal opens in, and its opening
notice's own payment look-up (`renewal-lean-2`): paid already, no notice; partly paid, the
notice shows it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api import renewals as renewal_api
from csp_core.registry import NotificationStatus
from csp_core.renewals.billing import StepKind, cutoff_at, next_period, period_of, period_start
from csp_core.renewals.values import CycleResult, renewal_workflow_id
from csp_core.stages import OpsAttention, PaymentStatus
from tests.support.stack import Stack, example
from tests.test_renewal_workflow import (
    _amount_paid,
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


async def open_next_period(
    stack: Stack, subscription_id: str, period: str | None = None
):  # -> (period, handle)
    period = period or next_period(period_of(await now(stack)))
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
    # Asked once, never again (the ledger, not the sink: while the cycle's result is awaited
    # the test server may skip ahead to the subscription's own e-mails, refused alike).
    notice = stack.registry.get_notification(f"{handle.id}:{StepKind.NOTICE.value}")
    assert notice is not None
    assert (notice.status, notice.attempts) == (NotificationStatus.UNDELIVERABLE, 1)
    assert 550 in [r.code for r in stack.sink.refused_attempts()]
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


async def test_a_renewal_opens_in_13_events_with_its_notice_sent(stack: Stack) -> None:
    """The shape the renewal-lean-2 patch gives a new renewal (its saved histories: v11): no
    opening upsert (the cycle started it with its search attributes), one patch marker (and its
    upsert), the timer, and the notice's activity, which looks the payment up itself (no local
    activity before it: renewal-lean's 14 events, v8, had one)."""
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
    assert events.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 1  # the patch
    assert events.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) == 1
    assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1  # the notice
    assert events.count(EventType.EVENT_TYPE_TIMER_STARTED) == 1  # the first reminder's
    assert len(events) == 13


async def record_charge(stack: Stack, subscription_id: str, period: str) -> None:
    """The period's charge, recorded as the cycle's first step records it (before any renewal
    workflow exists)."""
    policy = renewal_api.renewal_policy(stack.settings)
    starts_at = period_start(period, policy.timezone)
    stack.registry.bill_period(subscription_id, period, starts_at, cutoff_at(period, policy))


async def test_paid_before_the_opening_notice_sends_none_and_settles(stack: Stack) -> None:
    """The charge was paid between the cycle listing it and its workflow's first task: the
    opening notice's activity sees the payment, sends no notice, and the workflow settles with
    the payment's reference and time (renewal-lean-2: no look-up of the workflow's own)."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowExecutionStatus

    from csp_core.renewals.values import RenewalCharge, RenewalRequest

    subscription_id = await active_subscription(stack)
    period = next_period(period_of(await now(stack)))
    await advance_to(stack, local(period, 1, 8))
    await record_charge(stack, subscription_id, period)
    paid_at = await now(stack)
    payment = await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-EARLY", paid_at=paid_at
    )
    assert payment.settled and not payment.workflow_signalled  # no workflow to tell yet

    # Started as the cycle's fan-out starts it (it listed the charge while still open).
    context = stack.registry.charge_context(subscription_id)
    charge = RenewalCharge(
        subscription_id=subscription_id,
        period=period,
        amount=payment.charge.amount,
        **context.model_dump(exclude={"subscription_id"}),
    )
    started = await stack.env.client.start_workflow(
        RenewalPaymentWorkflow.run,
        RenewalRequest(charge=charge, policy=renewal_api.renewal_policy(stack.settings)),
        id=renewal_workflow_id(subscription_id, period),
        task_queue=stack.task_queue,
    )
    stack.started.append(started.id)
    # Settling needs no time to pass: wait with time skipping locked (a handle from
    # start_workflow would unlock it; the test server sometimes refused that here).
    handle = stack.env.client.get_workflow_handle_for(RenewalPaymentWorkflow.run, started.id)

    async def closed() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    assert await eventually(closed)
    result = await handle.result()

    assert result.status is PaymentStatus.PAID and result.escalation_level == 0
    assert result.payment_reference == "SPEI-EARLY" and result.paid_at == paid_at
    assert result.amount_due == 0 and result.ops_attention == []
    assert kinds(stack, subscription_id, period) == ["payment_received"]  # no renewal_notice
    history = await handle.fetch_history()
    assert "find_payment" not in history.to_json()  # no look-up of the workflow's own
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["send_opening_notice", "notify_renewal"]  # the second: paid


async def test_partly_paid_before_the_opening_notice_shows_what_was_paid(stack: Stack) -> None:
    """500 of 1290 paid before the cycle started the workflow: the opening notice shows the
    amount paid and what is due, and the workflow learns it from the notice's activity."""
    from decimal import Decimal

    subscription_id = await active_subscription(stack)
    period = next_period(period_of(await now(stack)))
    await advance_to(stack, local(period, 1, 7))
    await record_charge(stack, subscription_id, period)
    part = await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-A",
        amount=Decimal("500.00"), paid_at=await now(stack),
    )  # fmt: skip
    assert not part.settled

    period, handle = await open_next_period(stack, subscription_id, period)

    async def notices() -> list:
        return [m for m in stack.mails() if str(m["X-CSP-Kind"]) == "renewal_notice"]

    [notice] = await eventually(notices)
    body = notice.get_content()
    assert "Pagado hasta ahora: $500.00 MXN" in body and "Saldo pendiente: $790.00 MXN" in body
    current = await eventually(lambda: _amount_paid(handle))
    assert current == (Decimal("500.00"), Decimal("790.00"))
    assert (await status(handle)).status is PaymentStatus.PENDING
    assert kinds(stack, subscription_id, period) == ["renewal_notice"]  # no acknowledgement


async def test_paid_while_the_opening_notice_waits_for_the_mail_server_it_is_still_sent(
    stack: Stack,
) -> None:
    """The opening notice's first attempt claimed its ledger row, then the mail server was
    away; the charge is paid meanwhile. A later attempt sends the notice it claimed (at least
    once: no ledger row is left pending) and the workflow settles on the payment."""
    from tests.test_renewal_workflow import pay

    subscription_id = await active_subscription(stack)
    stack.sink.stop()
    try:
        period, handle = await open_next_period(stack, subscription_id)
        await stack.env.sleep(timedelta(minutes=1))  # attempts fail meanwhile
        notice_key = f"{handle.id}:notice"
        assert stack.registry.get_notification(notice_key).status.value == "pending"
        await pay(stack, subscription_id, period, "SPEI-OUTAGE")
    finally:
        stack.sink.start()
    result = await stack.result(handle)  # waits for its notices to go out

    assert result.status is PaymentStatus.PAID and result.payment_reference == "SPEI-OUTAGE"
    assert sorted(kinds(stack, subscription_id, period)) == ["payment_received", "renewal_notice"]
    assert stack.registry.get_notification(notice_key).status.value == "sent"
