"""Monthly renewals on the time-skipping test server: the ladder fires at the right local
instants, payment stops it, the cutoff (day 26 00:00 Mexico City) applies the policy."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from email.message import EmailMessage

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from api import renewals as renewal_api
from csp_core.registry import UnknownCharge, UnknownSubscription
from csp_core.renewals.billing import (
    REACTIVATION_ESCALATE_AFTER,
    REACTIVATION_RETRY_EVERY,
    CutoffPolicy,
    next_period,
    period_of,
    period_start,
)
from csp_core.renewals.values import CycleResult, RenewalStatus, renewal_workflow_id
from csp_core.stages import OrderStage, PaymentStatus
from csp_core.timezones import BUSINESS_TZ
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
    # A day at a time: one long skip that runs many timers and retries can outlast the test
    # server's own time limit for the call on a loaded machine.
    while delta > timedelta(0):
        step = min(delta, timedelta(days=1))
        await stack.env.sleep(step)
        delta -= step


def local(period: str, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    year, month = (int(p) for p in period.split("-"))
    return datetime(year, month, day, hour, minute, second, tzinfo=BUSINESS_TZ)


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
    at = timestamp.ToDatetime().replace(tzinfo=UTC).astimezone(BUSINESS_TZ)
    return at.replace(second=0, microsecond=0)


def kinds(stack: Stack, subscription_id: str, period: str) -> list[str]:
    prefix = f"{renewal_workflow_id(subscription_id, period)}:"
    # A long key is folded onto a continuation line: compare it without the folding whitespace.
    return [
        str(m["X-CSP-Kind"])
        for m in stack.mails()
        if str(m["X-CSP-Key"]).strip().startswith(prefix)
    ]


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
    # Partner Center has the API: no ops task, both done through it.
    assert (
        result.ops_tasks == []
        and stack.stats()["by_face"]["partner_center"]["subscriptions_suspended"] == 1
    )
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
    assert period_start("2027-02") == datetime(2027, 2, 1, tzinfo=BUSINESS_TZ)
    assert time(0, 0) == period_start("2027-02").astimezone(BUSINESS_TZ).time()


async def test_cycle_pages_and_continues_as_new_without_losing_count(stack: Stack) -> None:
    """Seven charges, pages of two, one page per run: the cycle continues as new three times,
    starts every renewal once, and its final result still reports what the first run recorded."""
    from csp_core.registry import NewSubscription
    from csp_core.renewals.values import CycleRequest
    from workflows.renewal_cycle import RenewalCycleWorkflow

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


# --- issue 7: a paid customer is never left suspended; notices never stop the chase;
# --- partial payments keep the charge open; one bad charge never blocks the cycle.


async def current_details(handle: WorkflowHandle) -> str:
    """What the Web UI shows as the workflow's current details."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def ops_attention(handle: WorkflowHandle) -> list[str]:
    return list((await handle.describe()).typed_search_attributes.get(sa.OPS_ATTENTION) or [])


async def eventually(probe, seconds: float = 10.0):
    """Poll (real time, the test clock locked) until `probe()` is truthy: a signal's effects
    take the worker a few milliseconds."""
    for _ in range(int(seconds / 0.05)):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {probe}")


def ops_mails(stack: Stack, kind: str) -> list[EmailMessage]:
    return [m for m in stack.mails() if str(m["X-CSP-Kind"]) == kind]


def fault(stack: Stack, status: int, times: int) -> None:
    """The provider refuses the next `times` subscription updates (suspend or reactivate)."""
    stack.sandbox.post(
        "/sandbox/faults",
        json={"method": "PATCH", "path_prefix": "/v1/customers", "status": status,
              "times": times},
    ).raise_for_status()  # fmt: skip


async def suspended_period(stack: Stack):
    """Suspension policy; nobody pays; the subscription is suspended at the cutoff."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 26, 0, 30))
    assert (await status(handle)).status is PaymentStatus.SUSPENDED
    return subscription_id, period, handle


async def test_refused_reactivation_alerts_ops_at_once_and_is_retried_six_hours_later(
    stack: Stack,
) -> None:
    subscription_id, period, handle = await suspended_period(stack)
    fault(stack, 403, times=1)  # the provider refuses the first reactivation for good

    await advance_to(stack, local(period, 28, 11))
    paid = await now(stack)
    await pay(stack, subscription_id, period, "SPEI-LATE")

    assert await eventually(lambda: ops_attention(handle)) == ["REACTIVATION_FAILED"]
    assert (await status(handle)).status is PaymentStatus.SUSPENDED  # what the customer lives
    assert stack.registry.get_subscription(subscription_id).status == "suspended"
    details = await current_details(handle)
    assert "still suspended" in details and "REACTIVATION_FAILED" in details
    alert = (await eventually(lambda: _async(ops_mails(stack, "renewal_reactivation_failed"))))[0]
    assert str(alert["To"]) == "ops@test.example.mx"
    assert "siguen sin acceso" in alert.get_content()

    retry_at = paid + REACTIVATION_RETRY_EVERY
    await advance_to(stack, retry_at - timedelta(seconds=1))
    assert (await status(handle)).status is PaymentStatus.SUSPENDED
    assert stack.stats()["subscriptions_reactivated"] == 0

    await advance_to(stack, retry_at + timedelta(seconds=1))  # the timer started a moment after
    result = await stack.result(handle)

    assert result.status is PaymentStatus.REACTIVATED and result.ops_attention == []
    assert await ops_attention(handle) == []
    assert (await handle.describe()).typed_search_attributes.get(sa.PAYMENT_STATUS) == (
        "REACTIVATED"
    )
    assert stack.stats()["subscriptions_reactivated"] == 1
    assert stack.registry.get_subscription(subscription_id).status == "active"
    assert kinds(stack, subscription_id, period)[-3:] == [
        "renewal_suspended", "renewal_reactivation_failed", "renewal_reactivated"
    ]  # fmt: skip


async def test_provider_failing_for_hours_escalates_then_reactivates_once(stack: Stack) -> None:
    subscription_id, period, handle = await suspended_period(stack)
    fault(stack, 503, times=30)  # hours of server errors: more than the escalation window

    await advance_to(stack, local(period, 28, 11))
    paid = await now(stack)
    await pay(stack, subscription_id, period, "SPEI-LATE")

    await advance_to(stack, paid + timedelta(hours=1))
    assert await ops_attention(handle) == []  # still within the retries, nobody bothered yet
    assert ops_mails(stack, "renewal_reactivation_failed") == []

    await advance_to(stack, paid + REACTIVATION_ESCALATE_AFTER)
    assert await ops_attention(handle) == ["REACTIVATION_FAILED"]
    assert (await status(handle)).status is PaymentStatus.SUSPENDED
    assert len(ops_mails(stack, "renewal_reactivation_failed")) == 1

    result = await stack.result(handle)

    assert result.status is PaymentStatus.REACTIVATED
    assert await ops_attention(handle) == []
    stats = stack.stats()
    assert stats["faults_served"] == 30
    assert stats["subscriptions_reactivated"] == 1
    assert len(ops_mails(stack, "renewal_reactivation_failed")) == 1  # one alert, not per retry


async def test_failed_suspension_leaves_the_charge_at_risk_and_tells_ops(stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    subscription_id, period, handle = await open_period(stack)
    fault(stack, 403, times=1)
    await advance_to(stack, local(period, 26, 0, 30))

    assert (await status(handle)).status is PaymentStatus.AT_RISK
    assert stack.stats()["subscriptions_suspended"] == 0
    assert len(ops_mails(stack, "renewal_suspension_failed")) == 1
    assert (await status(handle)).ops_attention == ["SUSPENSION_FAILED"]

    await advance_to(stack, local(period, 27, 10))
    await pay(stack, subscription_id, period, "SPEI-LATE")
    result = await stack.result(handle)

    assert result.status is PaymentStatus.PAID  # never suspended: nothing to reactivate
    assert stack.stats()["subscriptions_reactivated"] == 0


async def test_partial_payment_keeps_the_charge_open_and_the_ladder_going(stack: Stack) -> None:
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 10, 12))

    part = await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-A",
        amount=Decimal("500.00"), paid_at=await now(stack),
    )  # fmt: skip
    again = await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-A",
        amount=Decimal("500.00"), paid_at=await now(stack),
    )  # fmt: skip

    assert part.newly_paid and not part.settled and not again.newly_paid
    charge = stack.registry.get_charge(subscription_id, period)
    assert (charge.amount_paid, charge.amount_due) == (Decimal("500.00"), Decimal("790.00"))
    assert charge.status is PaymentStatus.PENDING and charge.paid_at is None
    seen = await eventually(lambda: _amount_paid(handle))
    assert seen == (Decimal("500.00"), Decimal("790.00"))
    assert "Paid 500.00 of 1290.00 MXN; 790.00 due." in await current_details(handle)
    partial = await eventually(lambda: _async(ops_mails(stack, "renewal_partial_payment")))
    assert len(partial) == 1 and "Saldo pendiente: $790.00 MXN" in partial[0].get_content()

    await advance_to(stack, local(period, 15, 9) - timedelta(seconds=1))
    assert (await status(handle)).status is PaymentStatus.PENDING
    await advance_to(stack, local(period, 15, 9, 0, 1))
    assert (await status(handle)).status is PaymentStatus.REMINDED  # the ladder goes on
    reminder = ops_mails(stack, "renewal_reminder")[-1]
    assert "Saldo pendiente: $790.00 MXN" in reminder.get_content()

    await advance_to(stack, local(period, 16, 10))
    rest_paid_at = await now(stack)
    # No amount: what is still due.
    rest = await pay(stack, subscription_id, period, "SPEI-B", paid_at=rest_paid_at)
    result = await stack.result(handle)

    assert rest.settled and rest.charge.paid_amount == Decimal("1290.00")
    assert result.status is PaymentStatus.PAID and result.amount_due == Decimal(0)
    assert result.payment_reference == "SPEI-B" and result.paid_at == rest_paid_at
    assert [p.amount for p in stack.registry.list_payments(subscription_id, period)] == [
        Decimal("500.00"), Decimal("790.00")
    ]  # fmt: skip
    assert kinds(stack, subscription_id, period) == [
        "renewal_notice", "renewal_partial_payment", "renewal_reminder", "payment_received"
    ]  # fmt: skip


async def test_notices_that_cannot_be_sent_never_stop_the_ladder_or_the_cutoff(
    stack: Stack,
) -> None:
    """The mail server is down for the whole month: every step still happens at its instant,
    the subscription is suspended at the cutoff, and ops see the undeliverable notices."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    subscription_id = await active_subscription(stack)
    stack.mailer.port = _closed_port()  # type: ignore[attr-defined]  # SMTP outage from now on
    await stack.mailer.aclose()  # type: ignore[attr-defined]  # and its open connections with it
    period = next_period(period_of(await now(stack)))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    handle = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(subscription_id, period)
    )
    stack.started.append(handle.id)
    await stack.first_task_done(handle)

    for day, hour, before, after in [
        (15, 9, PaymentStatus.PENDING, PaymentStatus.REMINDED),
        (23, 9, PaymentStatus.REMINDED, PaymentStatus.ESCALATED),
        (26, 0, PaymentStatus.ESCALATED, PaymentStatus.SUSPENDED),
    ]:
        await advance_to(stack, local(period, day, hour) - timedelta(seconds=1))
        assert (await status(handle)).status is before
        await advance_to(stack, local(period, day, hour, 0, 1))
        assert (await status(handle)).status is after, (day, hour)
    assert stack.stats()["subscriptions_suspended"] == 1
    assert await ops_attention(handle) == ["NOTICE_UNDELIVERABLE"]  # the opening one, by now
    assert f"{handle.id}:notice" in await current_details(handle)
    assert stack.mails() == [] or kinds(stack, subscription_id, period) == []

    await advance_to(stack, local(period, 27, 10))
    await pay(stack, subscription_id, period, "SPEI-LATE")
    result = await stack.result(handle)  # waits for the last notices to be given up

    assert result.status is PaymentStatus.REACTIVATED
    assert result.ops_attention == ["NOTICE_UNDELIVERABLE"]
    assert stack.stats()["subscriptions_reactivated"] == 1


async def test_bad_charges_are_reported_and_the_others_start(stack: Stack) -> None:
    """One subscription's amount overflows the registry's NUMERIC(12, 2), another lost its
    tenant row: both are named in the cycle's result and flagged; the good ones start."""
    from csp_core.registry import NewSubscription
    from csp_core.renewals.values import CycleRequest
    from workflows.renewal_cycle import RenewalCycleWorkflow

    def line(sub: str, quantity: int) -> NewSubscription:
        return NewSubscription(
            subscription_id=sub, sku="CFQ7TTC0LH18:0001", quantity=quantity,
            product_name="M365 BB", term="P1M", billing_cycle="monthly",
            unit_price=Decimal("129.00"),
        )  # fmt: skip

    registry = stack.registry
    for n, domain in enumerate(["buenos.onmicrosoft.com", "huerfano.onmicrosoft.com"]):
        registry.record_order(f"BAD-{n}", "f" * 64, "RSL-042", domain, "create", "Integradora",
                              "compras@integradoranorte.mx")  # fmt: skip
        registry.record_tenant(domain, f"tid-{n}", "Cliente SA de CV", "RSL-042", "created")
    registry.record_subscriptions(
        "BAD-0",
        "buenos.onmicrosoft.com",
        [line("sub-good-1", 1), line("sub-overflow", 10**9), line("sub-good-2", 2)],
    )
    registry.record_subscriptions("BAD-1", "huerfano.onmicrosoft.com", [line("sub-orphan", 1)])
    bought = await now(stack)
    for sub in ["sub-good-1", "sub-overflow", "sub-good-2", "sub-orphan"]:
        registry.set_subscription_status(sub, "active", activated_at=bought)
    period = next_period(period_of(bought))
    policy = renewal_api.renewal_policy(stack.settings)
    # The orphan's charge was recorded, then its tenant row was lost (a broken restore).
    from csp_core.renewals.billing import cutoff_at

    registry.upsert_charge("sub-orphan", period, Decimal("129.00"), cutoff_at(period, policy))
    with sqlite3.connect(stack.registry_path) as db:  # foreign keys off: break it on purpose
        db.execute("DELETE FROM tenants WHERE domain = 'huerfano.onmicrosoft.com'")
    stack.started.extend(renewal_workflow_id(s, period) for s in ["sub-good-1", "sub-good-2"])

    handle = await stack.env.client.start_workflow(
        RenewalCycleWorkflow.run,
        CycleRequest(period=period, policy=policy, page_size=2, pages_per_run=1),
        id=f"renewal-cycle-{period}-bad",
        task_queue=stack.task_queue,
    )
    result = await handle.result()

    assert result.renewals_started == 2 and result.charges_prepared == 3  # the orphan recorded
    failed = {f.subscription_id: f.reason for f in result.failed}
    assert set(failed) == {"sub-overflow", "sub-orphan"} and result.failed_count == 2
    assert "ChargeAmountOutOfRange" in failed["sub-overflow"]
    assert "UnknownSubscription" in failed["sub-orphan"]
    assert await ops_attention(handle) == ["CHARGE_FAILED"]
    for sub in ["sub-good-1", "sub-good-2"]:
        described = await stack.env.client.get_workflow_handle(
            renewal_workflow_id(sub, period)
        ).describe()
        assert described.typed_search_attributes.get(sa.SUBSCRIPTION_ID) == sub


async def test_a_database_outage_is_not_a_bad_charge() -> None:
    """The fan-out skips a charge whose data is refused, but an unreachable database fails
    the activity (Temporal retries it) instead of reporting every charge as bad."""
    from sqlalchemy.exc import OperationalError

    from activities.renewal_pages import charge_failure as _charge_failure
    from csp_core.renewals.billing import ChargeAmountOutOfRange

    skipped = _charge_failure("sub-1", ChargeAmountOutOfRange("too big"))
    assert skipped.subscription_id == "sub-1" and "too big" in skipped.reason
    with pytest.raises(OperationalError):
        _charge_failure("sub-1", OperationalError("SELECT 1", {}, Exception("db down")))


async def _amount_paid(handle: WorkflowHandle) -> tuple[Decimal, Decimal] | None:
    current = await status(handle)
    return (current.amount_paid, current.amount_due) if current.amount_paid else None


async def _async(value):
    return value


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
