"""Monthly renewals on the time-skipping test server: the ladder fires at the right local
instants, payment stops it, the cutoff (day 26 00:00 Mexico City) applies the policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from api import renewals as renewal_api
from csp_core.billing import CutoffPolicy, next_period, period_of, period_start
from csp_core.registry import UnknownCharge, UnknownSubscription
from csp_core.renewals import CycleResult, RenewalStatus, renewal_workflow_id
from csp_core.stages import OrderStage, PaymentStatus
from csp_core.timezones import MEXICO_CITY
from temporalutil import search_attributes as sa
from tests.support.stack import Stack, example
from workflows.renewal import RenewalPaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def active_subscription(stack: Stack) -> str:
    """Buy 10 seats of M365 Business Basic billed monthly (129.00 each) through the real flow."""
    order = example("order-create.json")
    result = await stack.result(await stack.submit(order))
    assert result.stage is OrderStage.ACTIVE
    return result.subscription_ids[0]


async def now(stack: Stack) -> datetime:
    return await stack.env.get_current_time()


async def advance_to(stack: Stack, local: datetime) -> None:
    delta = local - await now(stack)
    assert delta > timedelta(0), f"the test clock is already past {local}"
    await stack.env.sleep(delta)


def local(period: str, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    year, month = (int(p) for p in period.split("-"))
    return datetime(year, month, day, hour, minute, second, tzinfo=MEXICO_CITY)


async def open_period(stack: Stack, day: int = 1, hour: int = 8, month: int | None = None):
    """Buy a subscription, then open the next billing period (or the next one in `month`) at
    day/hour local. The period is chosen after the purchase: buying takes test time too."""
    subscription_id = await active_subscription(stack)
    period = next_period(period_of(await now(stack)))
    while month is not None and int(period[5:]) != month:
        period = next_period(period)
    await advance_to(stack, local(period, day, hour))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    # The cycle needs no time to pass: await it with time skipping locked.
    started = await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    assert started.renewals_started == 1
    handle = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(subscription_id, period)
    )
    stack.started.append(handle.id)
    await stack.first_task_done(handle)
    return subscription_id, period, handle


async def status(handle: WorkflowHandle) -> RenewalStatus:
    return await handle.query(RenewalPaymentWorkflow.status)


async def pay(
    stack: Stack,
    subscription_id: str,
    period: str,
    reference: str = "SPEI-1",
    paid_at: datetime | None = None,
):
    """Record a payment as the billing system does; it was paid now, on the test clock."""
    return await renewal_api.record_payment(
        stack.env.client,
        stack.registry,
        subscription_id,
        period,
        reference,
        paid_at=paid_at or await now(stack),
    )


async def sent_at(handle: WorkflowHandle) -> list[tuple[str, datetime]]:
    """When each e-mail was asked for: (kind, local time), from the workflow's own history."""
    history = await handle.fetch_history()
    out = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        summary = event.user_metadata.summary.data.decode().strip('"')
        if summary.startswith("E-mail: "):
            out.append((summary.removeprefix("E-mail: "), _local(event.event_time)))
    return out


def _local(timestamp) -> datetime:  # protobuf Timestamp → local datetime
    from datetime import UTC

    # To the minute: a step fires on its timer, plus the milliseconds the worker takes.
    at = timestamp.ToDatetime().replace(tzinfo=UTC).astimezone(MEXICO_CITY)
    return at.replace(second=0, microsecond=0)


def kinds(stack: Stack, subscription_id: str, period: str) -> list[str]:
    prefix = f"{renewal_workflow_id(subscription_id, period)}:"
    return [str(m["X-CSP-Kind"]) for m in stack.mails() if str(m["X-CSP-Key"]).startswith(prefix)]


async def test_payment_before_any_reminder_stops_the_ladder(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack)
    described = (await handle.describe()).typed_search_attributes
    assert described.get(sa.PAYMENT_STATUS) == "PENDING"
    assert described.get(sa.BILLING_PERIOD) == period
    assert described.get(sa.PAYMENT_DUE_AT) == local(period, 26)
    charge = stack.registry.get_charge(subscription_id, period)
    assert charge.amount == Decimal("1290.00")

    await advance_to(stack, local(period, 3, 12))
    payment = await pay(stack, subscription_id, period)
    result = await stack.result(handle)

    assert payment.newly_paid and payment.workflow_signalled
    assert result.status is PaymentStatus.PAID and result.escalation_level == 0
    assert kinds(stack, subscription_id, period) == ["renewal_notice", "payment_received"]
    assert (await handle.describe()).typed_search_attributes.get(sa.PAYMENT_STATUS) == "PAID"


async def test_cycle_started_twice_for_a_period_starts_each_renewal_once(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack)
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    again = await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    assert again.renewals_started == 0
    assert len(stack.registry.list_charges(period)) == 1
    assert (await status(handle)).status is PaymentStatus.PENDING
    assert kinds(stack, subscription_id, period) == ["renewal_notice"]


LADDER = ["renewal_notice", "renewal_reminder", "renewal_reminder", "renewal_escalation",
          "renewal_final_notice"]  # fmt: skip


@pytest.mark.parametrize(
    ("pay_day", "pay_hour", "steps_sent", "level"),
    [
        (15, 8, 1, 0),  # an hour before the first reminder
        (15, 10, 2, 1),  # between the two reminders
        (20, 10, 3, 2),  # after the second reminder
        (23, 10, 4, 3),  # after the escalation to ops
        (25, 10, 5, 4),  # after the final notice
    ],
)
async def test_payment_between_ladder_steps_sends_exactly_the_steps_before_it(
    stack: Stack, pay_day: int, pay_hour: int, steps_sent: int, level: int
) -> None:
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, pay_day, pay_hour))
    await pay(stack, subscription_id, period)
    result = await stack.result(handle)

    assert result.status is PaymentStatus.PAID
    assert result.escalation_level == level
    assert kinds(stack, subscription_id, period) == LADDER[:steps_sent] + ["payment_received"]
    charge = stack.registry.get_charge(subscription_id, period)  # what `renewals status` shows
    assert (charge.status, charge.escalation_level) == (PaymentStatus.PAID, level)


async def test_ladder_steps_fire_at_09_local_on_days_15_20_23_25_and_cutoff_at_26_midnight(
    stack: Stack,
) -> None:
    subscription_id, period, handle = await open_period(stack)
    result = await stack.result(handle)  # nobody pays: the ladder runs to the cutoff and beyond

    assert result.status is PaymentStatus.AT_RISK
    times = await sent_at(handle)
    assert times == [
        ("notice", local(period, 1, 8)),
        ("reminder", local(period, 15, 9)),
        ("reminder", local(period, 20, 9)),
        ("escalation", local(period, 23, 9)),
        ("final_notice", local(period, 25, 9)),
        ("cutoff", local(period, 26, 0)),
    ]
    escalation = [m for m in stack.mails() if str(m["X-CSP-Kind"]) == "renewal_escalation"][-1]
    assert "ops@test.example.mx" in str(escalation["Cc"])


@pytest.mark.parametrize(
    ("paid", "recorded_after", "late"),
    [((25, 23, 59, 59), 0, False), ((26, 0, 0, 0), 1, True)],
    ids=["25th-23:59:59-in-time", "26th-00:00:00-late"],
)
async def test_payment_at_the_last_second_versus_at_the_cutoff(
    stack: Stack, paid: tuple[int, int, int, int], recorded_after: int, late: bool
) -> None:
    """Due *before* day 26 00:00 local. The v1 test server cannot take a signal on the very
    instant a timer fires, so the 00:00:00 payment is recorded one second after it was made;
    the rule is about when it was paid (the next test has a payment that beats the timer)."""
    subscription_id, period, handle = await open_period(stack)
    paid_at = local(period, *paid)
    await advance_to(stack, paid_at + timedelta(seconds=recorded_after))
    await pay(stack, subscription_id, period, paid_at=paid_at)
    result = await stack.result(handle)

    assert result.status is PaymentStatus.PAID
    assert result.paid_at == paid_at and result.paid_late is late
    sent = kinds(stack, subscription_id, period)
    assert ("renewal_at_risk" in sent) is late
    assert sent[-1] == "payment_received"
    assert stack.registry.get_charge(subscription_id, period).paid_at == paid_at


async def test_payment_stamped_at_the_cutoff_is_late_even_if_it_beats_the_timer(
    stack: Stack,
) -> None:
    """The billing system's clock runs a little ahead: its 00:00:00 payment reaches the
    workflow before the cutoff timer has fired. It is still late, and the cutoff applies."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 25, 23, 59, 58))
    await pay(stack, subscription_id, period, paid_at=local(period, 26))
    result = await stack.result(handle)

    assert result.status is PaymentStatus.REACTIVATED and result.paid_late
    assert kinds(stack, subscription_id, period)[-3:] == [
        "renewal_at_risk", "renewal_suspended", "renewal_reactivated"
    ]  # fmt: skip
    history = await handle.fetch_history()
    signalled = next(
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    assert signalled < local(period, 26)


async def test_february_has_its_cutoff_on_the_26th_too(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack, month=2)
    assert (await status(handle)).due_at == local(period, 26)

    result = await stack.result(handle)

    assert result.status is PaymentStatus.AT_RISK
    times = dict((kind, at) for kind, at in await sent_at(handle))
    assert times["final_notice"] == local(period, 25, 9)
    assert times["cutoff"] == local(period, 26, 0)


async def test_period_opened_on_day_21_skips_the_past_reminders(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack, day=21, hour=10)
    await advance_to(stack, local(period, 24, 12))
    await pay(stack, subscription_id, period)
    await stack.result(handle)

    assert [k for k, _ in await sent_at(handle)] == ["notice", "escalation", "paid"]
    assert kinds(stack, subscription_id, period) == [
        "renewal_notice", "renewal_escalation", "payment_received"
    ]  # fmt: skip


async def test_suspend_policy_suspends_at_cutoff_and_late_payment_reactivates(
    stack: Stack,
) -> None:
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 26, 0, 30))

    assert (await status(handle)).status is PaymentStatus.SUSPENDED
    assert stack.stats()["subscriptions_suspended"] == 1
    assert stack.registry.get_subscription(subscription_id).status == "suspended"

    await advance_to(stack, local(period, 28, 11))
    await pay(stack, subscription_id, period, "SPEI-LATE")
    result = await stack.result(handle)

    assert result.status is PaymentStatus.REACTIVATED
    assert stack.stats()["subscriptions_reactivated"] == 1
    assert stack.registry.get_subscription(subscription_id).status == "active"
    assert kinds(stack, subscription_id, period)[-3:] == [
        "renewal_at_risk", "renewal_suspended", "renewal_reactivated"
    ]  # fmt: skip


async def test_duplicate_payment_is_harmless(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 5, 10))
    first = await pay(stack, subscription_id, period, "SPEI-7")
    await stack.result(handle)
    again = await pay(stack, subscription_id, period, "SPEI-7")

    assert first.newly_paid and not again.newly_paid
    assert again.charge.paid_at == first.charge.paid_at
    assert kinds(stack, subscription_id, period).count("payment_received") == 1


async def test_payment_for_unknown_subscription_or_period_is_refused(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack)
    with pytest.raises(UnknownSubscription, match="no-such-sub"):
        await pay(stack, "no-such-sub", period)
    with pytest.raises(UnknownCharge, match="2001-01"):
        await pay(stack, subscription_id, "2001-01")
    assert (await status(handle)).status is PaymentStatus.PENDING


async def test_period_start_is_local_midnight() -> None:
    assert period_start("2027-02") == datetime(2027, 2, 1, tzinfo=MEXICO_CITY)
    assert time(0, 0) == period_start("2027-02").astimezone(MEXICO_CITY).time()


async def test_cycle_pages_and_continues_as_new_without_losing_count(stack: Stack) -> None:
    """Seven charges, pages of two, one page per run: the cycle continues as new three times,
    starts every renewal once, and its final result still reports what the first run recorded."""
    from csp_core.registry import NewSubscription
    from csp_core.renewals import CycleRequest
    from workflows.renewal import RenewalCycleWorkflow

    domain = "paginado.onmicrosoft.com"
    stack.registry.record_order("PAGES-1", "f" * 64, "RSL-042", domain, "create", "Integradora",
                                "compras@integradoranorte.mx")  # fmt: skip
    stack.registry.record_tenant(domain, "tid-pages", "Paginado SA de CV", "RSL-042", "created")
    subs = [f"sub-page-{n}" for n in range(7)]
    stack.registry.record_subscriptions(
        "PAGES-1",
        domain,
        [
            NewSubscription(
                subscription_id=sub,
                sku="CFQ7TTC0LH18:0001",
                quantity=1,
                product_name="M365 BB",
                term="P1M",
                billing_cycle="monthly",
                unit_price=Decimal("129.00"),
            )  # fmt: skip
            for sub in subs
        ],
    )
    bought = await now(stack)
    for sub in subs:
        stack.registry.set_subscription_status(sub, "active", activated_at=bought)
    period = next_period(period_of(bought))
    stack.started.extend(renewal_workflow_id(sub, period) for sub in subs)
    policy = renewal_api.renewal_policy(stack.settings)

    handle = await stack.env.client.start_workflow(
        RenewalCycleWorkflow.run,
        CycleRequest(period=period, policy=policy, page_size=2, pages_per_run=1),
        id=f"renewal-cycle-{period}-paged",
        task_queue=stack.task_queue,
    )
    first_run = handle.result_run_id
    result = await handle.result()

    assert (result.charges_prepared, result.renewals_started) == (7, 7)
    final = await handle.describe()
    assert final.run_id != first_run  # it did continue as new
    for sub in subs:  # each renewal exists once, for its own subscription
        described = await stack.env.client.get_workflow_handle(
            renewal_workflow_id(sub, period)
        ).describe()
        assert described.typed_search_attributes.get(sa.SUBSCRIPTION_ID) == sub
    assert len(stack.registry.list_charges(period)) == 7
