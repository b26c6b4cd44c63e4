"""Seat changes and cancellation reach the renewal charges, end to end: the real create order on
the time-skipping test server, the SubscriptionWorkflow's Updates, the real activities against
the sandbox over HTTP and the SQLite registry, then the next period's RenewalCycleWorkflow.

The example order buys 10 seats of M365 Business Basic at 129.00, billed monthly. Periods are
calendar months in Mexico City; the cycle runs them on day 1 at 08:00 local, as the schedule
does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api import renewals as renewal_api
from csp_core.calendar import format_mxn
from csp_core.renewals.billing import next_period, period_of, period_start
from csp_core.renewals.values import CycleResult, renewal_workflow_id
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.values import SubscriptionDetails
from csp_core.timezones import BUSINESS_TZ
from tests.support.faults import ProviderWire, RegistryOutage
from tests.support.stack import Stack, example
from workflows.renewal import RenewalPaymentWorkflow
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTOSO = "contosomx.onmicrosoft.com"
NORTHWIND = "northwind.onmicrosoft.com"
PRICE = Decimal("129.00")
CENT = Decimal("0.01")
MICROSECOND = timedelta(microseconds=1)


async def buy(stack: Stack, example_name: str, domain: str) -> list[str]:
    """Run an example order to ACTIVE; the subscription ids it activated in `domain`."""
    result = await stack.settle(await stack.submit(example(example_name)))
    assert result.stage.value == "ACTIVE"
    return [lic.subscription_id for lic in stack.registry.list_licenses(domain)]


async def subscription(stack: Stack, subscription_id: str) -> WorkflowHandle:
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{subscription_id}"
    )
    await stack.first_task_done(handle)
    return handle


async def update(handle: WorkflowHandle, name: str, *args: Any, id: str) -> SubscriptionDetails:
    return await handle.execute_update(getattr(SubscriptionWorkflow, name), args=list(args), id=id)


async def now(stack: Stack) -> datetime:
    return await stack.env.get_current_time()


async def advance_to(stack: Stack, instant: datetime) -> None:
    """Move the test clock a day at a time (open subscription workflows have no timer, so one
    long unlocked skip could jump anywhere)."""
    delta = instant - await now(stack)
    assert delta > timedelta(0), f"the test clock is already past {instant}"
    while delta > timedelta(0):
        step = min(delta, timedelta(days=1))
        await stack.env.sleep(step)
        delta -= step


def local(period: str, day: int, hour: int = 0) -> datetime:
    year, month = (int(p) for p in period.split("-"))
    return datetime(year, month, day, hour, tzinfo=BUSINESS_TZ)


async def run_cycle(stack: Stack, period: str) -> CycleResult:
    """The period's renewal cycle, as the schedule starts it on day 1 at 08:00."""
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    stack.started.append(cycle.id)
    return await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()


class ChangeAttempts(NamedTuple):
    scheduled_at: datetime  # when the workflow scheduled the change_seats activity
    started_at: datetime  # when its last attempt started
    attempts: int


async def seat_change_activities(handle: WorkflowHandle) -> list[ChangeAttempts]:
    """The subscription workflow's change_seats activities, from its history (its clock)."""
    history = await handle.fetch_history()
    scheduled: dict[int, datetime] = {}
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "change_seats":
                scheduled[event.event_id] = event.event_time.ToDatetime(tzinfo=UTC)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            if attrs.scheduled_event_id in scheduled:
                started_at = event.event_time.ToDatetime(tzinfo=UTC)
                found.append(
                    ChangeAttempts(scheduled[attrs.scheduled_event_id], started_at, attrs.attempt)
                )
    return found


def same_instant(a: datetime, b: datetime) -> bool:
    """The activity's scheduled time and the history's event time are one instant, which the
    test server may write a millisecond apart."""
    return abs(a - b) < timedelta(milliseconds=100)


async def renewal_notices(stack: Stack) -> list[Any]:
    """The renewal notices the sink received, once at least one has arrived (the payment
    workflow sends its opening notice beside its first steps)."""
    for _ in range(200):
        if found := [m for m in stack.mails() if str(m["X-CSP-Kind"]) == "renewal_notice"]:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("no renewal notice arrived")


def expected_proration(delta: int, changed_at: datetime, period: str) -> Decimal:
    """delta × 129.00 × (what is left of `period` after the change / the period's length)."""
    start, end = period_start(period), period_start(next_period(period))
    share = Decimal((end - changed_at) // MICROSECOND) / Decimal((end - start) // MICROSECOND)
    return (delta * PRICE * share).quantize(CENT, rounding=ROUND_HALF_UP)


async def test_a_seat_change_changes_the_next_charge(stack: Stack) -> None:
    """5 seats added on day 15 at noon: the next period's charge is 15 × 129.00 plus the
    added seats for the rest of the month they were added in (about half of 5 × 129.00)."""
    [sub_id] = await buy(stack, "order-create.json", CONTOSO)
    handle = await subscription(stack, sub_id)
    month = next_period(period_of(await now(stack)))
    await advance_to(stack, local(month, 15, 12))
    asked_at = await now(stack)

    answer = await update(handle, "add_seats", 5, id="req-add-5")

    assert answer.seats == 15 and stack.registry.get_subscription(sub_id).quantity == 15
    [change] = stack.registry.list_seat_changes(sub_id)
    [activity] = await seat_change_activities(handle)  # dated on the workflow's clock
    assert activity.attempts == 1 and same_instant(change.changed_at, activity.scheduled_at)
    assert asked_at <= change.changed_at
    assert (change.seats_before, change.seats_after, change.unit_price) == (10, 15, PRICE)
    following = next_period(month)
    assert change.prorated_until == period_start(following)
    assert change.proration_amount == expected_proration(5, change.changed_at, month)
    days = (period_start(following) - period_start(month)).days
    about_half = 5 * PRICE * (days - Decimal("14.5")) / days  # day 15 12:00 to the month end
    assert abs(change.proration_amount - about_half) <= CENT
    assert change.billed_period is None

    cycle = await run_cycle(stack, following)

    assert (cycle.charges_prepared, cycle.renewals_started) == (1, 1)
    charge = stack.registry.get_charge(sub_id, following)
    assert charge.amount == 15 * PRICE + change.proration_amount
    assert stack.registry.list_seat_changes(sub_id)[0].billed_period == following
    payment = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(sub_id, following)
    )
    stack.started.append(payment.id)
    await stack.first_task_done(payment)
    assert (await payment.query(RenewalPaymentWorkflow.status)).amount == charge.amount
    [notice] = await renewal_notices(stack)
    assert format_mxn(charge.amount) in notice.get_content()

    # From then on: 15 seats, nothing prorated any more.
    await renewal_api.record_payment(
        stack.env.client, stack.registry, sub_id, following, "SPEI-1", paid_at=await now(stack)
    )
    assert (await run_cycle(stack, next_period(following))).charges_prepared == 1
    assert stack.registry.get_charge(sub_id, next_period(following)).amount == 15 * PRICE


async def test_a_seat_change_retried_after_a_failure_is_recorded_once_dated_when_asked(
    stack: Stack, wire: ProviderWire
) -> None:
    """The provider changes the seats, then the registry is unreachable for a moment: the
    activity is retried, the provider replays its answer to the same MS-RequestId, and the
    ledger gets one row, dated when the workflow first asked, not when the retry ran."""
    [sub_id] = await buy(stack, "order-create.json", CONTOSO)
    handle = await subscription(stack, sub_id)
    outage = RegistryOutage(stack.registry)

    def registry_goes_away_for_a_second() -> None:
        outage.begin()
        asyncio.get_running_loop().call_later(1.0, outage.end)

    wire.after[("PATCH", f"/subscriptions/{sub_id}")] = registry_goes_away_for_a_second

    assert (await update(handle, "add_seats", 5, id="req-add-5")).seats == 15

    patches = [rid for method, _, rid in wire.request_ids if method == "PATCH"]
    assert len(patches) == 2 and patches[0] == patches[1]  # the same question, twice
    assert stack.stats()["quantity_changes"] == 1
    [change] = stack.registry.list_seat_changes(sub_id)
    assert (change.seats_before, change.seats_after) == (10, 15)
    assert stack.registry.get_subscription(sub_id).quantity == 15
    [activity] = await seat_change_activities(handle)
    assert activity.attempts == 2 and same_instant(change.changed_at, activity.scheduled_at)
    assert change.changed_at < activity.started_at - timedelta(seconds=1)  # not the retry's
    assert change.proration_amount == expected_proration(
        5, change.changed_at, period_of(change.changed_at)
    )


async def test_seats_removed_inside_the_window_are_a_credit_on_the_next_charge(
    stack: Stack,
) -> None:
    [sub_id] = await buy(stack, "order-create.json", CONTOSO)
    handle = await subscription(stack, sub_id)
    bought = period_of(await now(stack))

    assert (await update(handle, "set_seats", 8, id="req-8")).seats == 8

    [change] = stack.registry.list_seat_changes(sub_id)
    assert change.proration_amount == expected_proration(
        -2, change.changed_at, period_of(change.changed_at)
    )
    assert change.proration_amount < 0
    following = next_period(bought)
    assert (await run_cycle(stack, following)).charges_prepared == 1
    charge = stack.registry.get_charge(sub_id, following)
    assert charge.amount == 8 * PRICE + change.proration_amount  # less than 8 × 129.00


async def test_a_cancel_inside_the_window_stops_the_next_charge(stack: Stack) -> None:
    """Contoso's license is cancelled inside its window; Northwind's monthly license, bought
    alongside, shows the same cycle does charge a live subscription."""
    [contoso] = await buy(stack, "order-create.json", CONTOSO)
    northwind = await buy(stack, "order-link-ours.json", NORTHWIND)
    handle = await subscription(stack, contoso)

    cancelled = await update(handle, "cancel", id="req-cancel")

    assert cancelled.status is SubscriptionStatus.CANCELLED
    assert stack.registry.get_subscription(contoso).status == "cancelled"
    following = next_period(period_of(await now(stack)))
    cycle = await run_cycle(stack, following)

    # Northwind's monthly line owes a charge; its annual one not yet (paid with the order).
    [monthly] = [
        s for s in northwind if stack.registry.get_subscription(s).billing_cycle == "monthly"
    ]
    assert (cycle.charges_prepared, cycle.renewals_started, cycle.failed) == (1, 1, [])
    assert [c.subscription_id for c in stack.registry.list_charges()] == [monthly]
    assert stack.registry.get_charge(contoso, following) is None
    stack.started.append(renewal_workflow_id(monthly, following))
    with pytest.raises(RPCError) as missing:
        await stack.env.client.get_workflow_handle(
            renewal_workflow_id(contoso, following)
        ).describe()
    assert missing.value.status is RPCStatusCode.NOT_FOUND
    [notice] = await renewal_notices(stack)
    assert monthly in str(notice["X-CSP-Key"]) and contoso not in str(notice["X-CSP-Key"])


async def test_an_expired_subscription_owes_no_later_charge(stack: Stack) -> None:
    """A term that ended with auto-renew off leaves the subscription EXPIRED in the registry:
    the next cycle charges nothing for it."""
    [sub_id] = await buy(stack, "order-create.json", CONTOSO)
    stack.registry.set_subscription_status(sub_id, "expired")

    cycle = await run_cycle(stack, next_period(period_of(await now(stack))))

    assert (cycle.charges_prepared, cycle.renewals_started) == (0, 0)
    assert stack.registry.list_charges() == []
