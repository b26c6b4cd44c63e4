"""Record the workflow histories the replay tests keep (`tests/test_replay.py`).

Not part of `make test`. Run it when a workflow's code is released, into a folder named for
the release, and commit the JSON files:

    HISTORIES_DIR=tests/histories/v2 .venv/bin/python -m pytest tests/histories/record.py

Every history recorded before stays: a change that breaks replaying any of them breaks
workflows already running in production, and needs `workflow.patched`. The scenarios only use
the oldest stable API (submit, signal, run a period, record a payment), so this file can be
run on an older checkout to record what that release wrote.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from temporalio.client import WorkflowHandle

from api import renewals as renewal_api
from csp_core.renewals.billing import CutoffPolicy, next_period, period_of
from csp_core.timezones import BUSINESS_TZ
from tests.support import ingram as on_ingram
from tests.support.stack import Stack, example
from workflows.order import LicenseOrderWorkflow

if TYPE_CHECKING:
    from csp_core.renewals.billing import RenewalPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")
ingram = on_ingram.ingram  # the fixture: the stack on the Ingram adapter (v7 scenarios)


@pytest.fixture
def out() -> Path:
    folder = Path(os.environ["HISTORIES_DIR"]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def save(handle: WorkflowHandle, folder: Path, name: str) -> None:
    history = json.loads((await handle.fetch_history()).to_json())
    text = json.dumps(history, separators=(",", ":"), sort_keys=True)
    (folder / f"{name}.json").write_text(text + "\n", encoding="utf-8")


def local(period: str, day: int, hour: int = 0) -> datetime:
    year, month = (int(p) for p in period.split("-"))
    return datetime(year, month, day, hour, tzinfo=BUSINESS_TZ)


async def advance_to(stack: Stack, at: datetime) -> None:
    await stack.env.sleep(at - await stack.env.get_current_time())


async def renewal(stack: Stack, out: Path, name: str, pay_on: tuple[int, int] | None) -> None:
    """Buy, open the next period on day 1 08:00, pay on (day, hour) or never."""
    order = example("order-create.json")
    bought = await stack.result(await stack.submit(order))
    subscription_id = bought.subscription_ids[0]
    period = next_period(period_of(await stack.env.get_current_time()))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id).result()
    handle = stack.env.client.get_workflow_handle(f"renewal-{subscription_id}-{period}")
    stack.started.append(handle.id)
    await stack.first_task_done(handle)
    if pay_on is not None:
        await advance_to(stack, local(period, *pay_on))
        await renewal_api.record_payment(
            stack.env.client, stack.registry, subscription_id, period, "SPEI-REPLAY"
        )
    await stack.result(handle)
    await save(handle, out, f"renewal_{name}")
    await save(stack.env.client.get_workflow_handle(cycle.id), out, f"cycle_{name}")


async def test_order_created_tenant_active(stack: Stack, out: Path) -> None:
    handle = await stack.submit(example("order-create.json"))
    await stack.result(handle)
    await save(handle, out, "order_create_active")


async def test_order_link_accepted_after_a_reminder(stack: Stack, out: Path) -> None:
    handle = await stack.submit(example("order-link-invite.json"))
    await stack.first_task_done(handle)
    await stack.env.sleep(timedelta(days=3))
    await handle.signal(LicenseOrderWorkflow.partner_accepted)
    await stack.result(handle)
    await save(handle, out, "order_link_accepted")


async def test_order_link_expired(stack: Stack, out: Path) -> None:
    handle = await stack.submit(example("order-link-invite.json"))
    await stack.result(handle)
    await save(handle, out, "order_link_expired")


async def test_renewal_paid_after_the_first_reminder(stack: Stack, out: Path) -> None:
    await renewal(stack, out, "paid_on_16th", (16, 10))


async def test_renewal_suspended_then_reactivated(stack: Stack, out: Path) -> None:
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    await renewal(stack, out, "suspended_paid_on_28th", (28, 11))


async def test_renewal_never_paid(stack: Stack, out: Path) -> None:
    await renewal(stack, out, "never_paid", None)


async def bought_and_billed(stack: Stack, hour: int) -> tuple[str, str, RenewalPolicy]:
    """Buy, move to the next period's day 1 at `hour` and record its charge (as the cycle
    would): the subscription, the period and the renewal policy (v11 scenarios)."""
    from csp_core.renewals.billing import cutoff_at, period_start

    bought = await stack.result(await stack.submit(example("order-create.json")))
    subscription_id = bought.subscription_ids[0]
    period = next_period(period_of(await stack.env.get_current_time()))
    await advance_to(stack, local(period, 1, hour))
    policy = renewal_api.renewal_policy(stack.settings)
    stack.registry.bill_period(
        subscription_id, period, period_start(period, policy.timezone), cutoff_at(period, policy)
    )
    return subscription_id, period, policy


async def test_renewal_paid_before_its_opening_notice(stack: Stack, out: Path) -> None:
    """From v11 (renewal-lean-2): paid between the fan-out listing the charge and the
    workflow's first task; the opening notice's activity sees it, sends nothing, it settles."""
    from csp_core.renewals.values import RenewalCharge, RenewalRequest

    subscription_id, period, policy = await bought_and_billed(stack, hour=8)
    paid = await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-EARLY"
    )
    context = stack.registry.charge_context(subscription_id)
    charge = RenewalCharge(period=period, amount=paid.charge.amount, **context.model_dump())
    handle = await stack.env.client.start_workflow(
        "RenewalPaymentWorkflow",
        RenewalRequest(charge=charge, policy=policy),
        id=f"renewal-{subscription_id}-{period}",
        task_queue=stack.task_queue,
    )
    stack.started.append(handle.id)
    await stack.result(handle)
    await save(handle, out, "renewal_paid_before_opening")


async def test_renewal_partly_paid_before_its_opening_notice(stack: Stack, out: Path) -> None:
    """From v11 (renewal-lean-2): 500 paid before the cycle opened the period (the notice shows
    it, the workflow learns it from the notice's activity), the rest on the 16th."""
    from decimal import Decimal

    subscription_id, period, _ = await bought_and_billed(stack, hour=7)
    await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-A", Decimal("500.00")
    )
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id).result()
    handle = stack.env.client.get_workflow_handle(f"renewal-{subscription_id}-{period}")
    stack.started.append(handle.id)
    await stack.first_task_done(handle)
    await advance_to(stack, local(period, 16, 10))
    await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-B"
    )
    await stack.result(handle)
    await save(handle, out, "renewal_partly_paid_before_opening")


async def test_subscription_seats_auto_renew_then_cancelled(stack: Stack, out: Path) -> None:
    """From v5: a license's workflow, changed by its Updates, then cancelled in its window."""
    from workflows.subscription import SubscriptionWorkflow

    bought = await stack.settle(await stack.submit(example("order-create.json")))
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{bought.subscription_ids[0]}"
    )
    await stack.first_task_done(handle)
    await handle.execute_update(SubscriptionWorkflow.add_seats, 5, id="record-add")
    await handle.execute_update(SubscriptionWorkflow.set_seats, 12, id="record-set")
    await handle.execute_update(SubscriptionWorkflow.set_auto_renew, False, id="record-renew")
    await handle.execute_update(SubscriptionWorkflow.cancel, id="record-cancel")
    await stack.result(handle)
    await save(handle, out, "subscription_changed_then_cancelled")


async def test_adoption_of_northwind(stack: Stack, out: Path) -> None:
    """From v6: adopting a tenant's existing subscriptions (one bought before this system, two
    managed already by the order that linked the tenant)."""
    from decimal import Decimal

    from api import subscriptions as subscription_api
    from csp_core.subscriptions.adoption import adoption_workflow_id

    await stack.settle(await stack.submit(example("order-create.json")))
    await stack.settle(await stack.submit(example("order-link-ours.json")))
    report = await subscription_api.adopt(
        stack.env.client,
        stack.registry,
        "northwind.onmicrosoft.com",
        stack.settings,
        {"CFQ7TTC0LH18:0001": Decimal("129.00")},
    )
    assert len(report.adopted) == 1
    handle = stack.env.client.get_workflow_handle(adoption_workflow_id(report.domain))
    await save(handle, out, "adoption_northwind")


async def _subscription(stack: Stack):  # -> WorkflowHandle of SubscriptionWorkflow
    from workflows.subscription import SubscriptionWorkflow

    bought = await stack.settle(await stack.submit(example("order-create.json")))
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{bought.subscription_ids[0]}"
    )
    await stack.first_task_done(handle)
    return handle


async def _until(check, what: str):  # the workflow's work after a timer runs on the wall clock
    import asyncio

    for _ in range(400):
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_subscription_renewed_then_cancelled(stack: Stack, out: Path) -> None:
    """From v6: seats added, the term renews at the anniversary (auto-renew on) and continues
    as new; the new run is cancelled inside the renewal's 168 h window. Both runs are kept."""
    from csp_core.subscriptions.terms import term_end_instant
    from workflows.subscription import SubscriptionWorkflow

    handle = await _subscription(stack)
    first_run = (await handle.describe()).run_id
    await handle.execute_update(SubscriptionWorkflow.add_seats, 2, id="record-add")
    details = await handle.query(SubscriptionWorkflow.details)
    await advance_to(stack, term_end_instant(details.term_ends_at))

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await _until(continued, "continue-as-new at the renewal")
    await handle.execute_update(SubscriptionWorkflow.cancel, id="record-cancel")
    await stack.result(handle)
    first = stack.env.client.get_workflow_handle(handle.id, run_id=first_run)
    await save(first, out, "subscription_renewed")
    await save(handle, out, "subscription_renewed_then_cancelled")


async def test_subscription_expired_after_the_notices(stack: Stack, out: Path) -> None:
    """From v6: auto-renew off, the 30-day notice, a suspension and a reactivation (as the
    renewal activities signal them), the 7-day notice, expiry at the anniversary."""
    from csp_core.subscriptions.terms import expiry_notice_at, term_end_instant
    from csp_core.subscriptions.values import REACTIVATED_SIGNAL, SUSPENDED_SIGNAL, PaymentHold
    from workflows.subscription import SubscriptionWorkflow

    handle = await _subscription(stack)
    await handle.execute_update(SubscriptionWorkflow.set_auto_renew, False, id="record-off")
    last_day = (await handle.query(SubscriptionWorkflow.details)).term_ends_at

    async def notices_sent(n: int) -> bool:
        return sum(1 for m in stack.mails() if m["X-CSP-Kind"] == "subscription_expiring") >= n

    await advance_to(stack, expiry_notice_at(last_day, 30, BUSINESS_TZ))
    await _until(lambda: notices_sent(1), "the 30-day notice")
    hold = PaymentHold(period=period_of(await stack.env.get_current_time()))
    await handle.signal(SUSPENDED_SIGNAL, hold)
    await handle.signal(REACTIVATED_SIGNAL, hold)
    await advance_to(stack, expiry_notice_at(last_day, 7, BUSINESS_TZ))
    await _until(lambda: notices_sent(2), "the 7-day notice")
    await advance_to(stack, term_end_instant(last_day))
    await stack.result(handle)
    await save(handle, out, "subscription_expired_after_notices")


# --- v7: operations Ingram has no API for, done by ops and confirmed (ops tasks) -------------


async def _ingram_tasks(handle: WorkflowHandle, query: str, count: int):  # -> list[OpsTask]
    async def found():
        tasks = await handle.query(query)
        return tasks if len(tasks) >= count else None

    return await _until(found, f"{count} ops task(s)")


async def _ingram_renewal(stack: Stack) -> tuple[str, str, WorkflowHandle]:
    """Buy under Ingram, open the next period with the suspension policy: nobody pays by the
    cutoff, so the renewal asks ops to suspend."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    bought = await stack.result(await stack.submit(example("order-create.json")))
    subscription_id = bought.subscription_ids[0]
    period = next_period(period_of(await stack.env.get_current_time()))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id).result()
    handle = stack.env.client.get_workflow_handle(f"renewal-{subscription_id}-{period}")
    stack.started.append(handle.id)
    await stack.first_task_done(handle)
    await advance_to(stack, local(period, 26, 1))
    await _ingram_tasks(handle, "ops_tasks", 1)
    return subscription_id, period, handle


async def test_renewal_suspended_and_reactivated_by_ops_under_ingram(ingram, out: Path) -> None:
    """From v7: Ingram has no API to suspend or reactivate: ops do both by hand and confirm."""
    from api import ops as ops_api
    from tests.support.ingram import at_ingram

    stack = ingram
    subscription_id, period, handle = await _ingram_renewal(stack)
    at_ingram(stack, subscription_id, status="suspended")
    await ops_api.confirm_task(stack.env.client, handle.id, f"suspend-{period}", "IM-REPLAY-1")
    await advance_to(stack, local(period, 28, 11))
    await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-REPLAY"
    )
    await _ingram_tasks(handle, "ops_tasks", 2)
    at_ingram(stack, subscription_id, status="active")
    await ops_api.confirm_task(stack.env.client, handle.id, f"reactivate-{period}", "IM-REPLAY-2")
    await stack.result(handle)
    await save(handle, out, "renewal_ingram_suspended_reactivated_by_ops")


async def test_renewal_suspension_withdrawn_by_a_payment_under_ingram(ingram, out: Path) -> None:
    """From v7: the suspension is still with ops (reminded, then overdue) when the payment
    arrives: the task is withdrawn and the charge is paid, never suspended."""
    stack = ingram
    subscription_id, period, handle = await _ingram_renewal(stack)
    await advance_to(stack, local(period, 27, 12))
    await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-REPLAY"
    )
    await stack.result(handle)
    await save(handle, out, "renewal_ingram_suspension_withdrawn")


async def test_subscription_changes_by_ops_under_ingram(ingram, out: Path) -> None:
    """From v7: seats pending with ops then confirmed, auto-renew declined, a cancel confirmed."""
    from api import ops as ops_api
    from tests.support.ingram import at_ingram
    from workflows.subscription import SubscriptionWorkflow

    stack = ingram
    handle = await _subscription(stack)
    sub_id = handle.id.removeprefix("subscription-")
    [seats] = (
        await handle.execute_update(SubscriptionWorkflow.set_seats, 12, id="r-seats")
    ).ops_tasks
    at_ingram(stack, sub_id, quantity=12)
    await ops_api.confirm_task(stack.env.client, handle.id, seats.task_id, "IM-REPLAY-3")

    async def seats_applied() -> bool:
        return (await handle.query(SubscriptionWorkflow.details)).seats == 12

    await _until(seats_applied, "the seats ops confirmed")
    [renew] = (
        await handle.execute_update(SubscriptionWorkflow.set_auto_renew, False, id="r-renew")
    ).ops_tasks
    await ops_api.decline_task(stack.env.client, handle.id, renew.task_id, "not in the portal")

    async def declined() -> bool:
        return not (await handle.query(SubscriptionWorkflow.details)).ops_tasks

    await _until(declined, "the declined auto-renew change")
    [cancel] = (await handle.execute_update(SubscriptionWorkflow.cancel, id="r-cancel")).ops_tasks
    at_ingram(stack, sub_id, status="deleted")
    await ops_api.confirm_task(stack.env.client, handle.id, cancel.task_id, "IM-REPLAY-4")
    await stack.settle(handle)
    await save(handle, out, "subscription_ingram_changes_by_ops")


# --- v8: providers' events (webhooks): the sandbox pushes them to the HTTP API ------------------


async def test_order_provisioning_woken_by_ingrams_event(
    ts_env, smtp_sink, registry, registry_path, out: Path
) -> None:
    """From v8: provisioning pending for hours, then Ingram's order-status event (the sandbox
    finished provisioning) wakes the look-up before its next retry."""
    from tests.support.webhooks import eventually, pushed_stack, stage_of

    async with pushed_stack(
        ts_env, smtp_sink, registry, registry_path, ingram=True, provisioning_delay_seconds=3600
    ) as pushed:
        stack = pushed.stack
        handle = await stack.submit(example("order-create.json"))
        await stack.first_task_done(handle)
        assert await eventually(lambda: _stage_is(handle, "ACTIVATING", stage_of))
        await stack.env.sleep(timedelta(hours=2))
        pushed.sandbox.post("/sandbox/provisioning/complete").raise_for_status()
        assert await eventually(lambda: _stage_is(handle, "ACTIVE", stage_of))
        await stack.settle(handle)
        await save(handle, out, "order_ingram_provisioning_woken_by_event")


async def test_subscription_cancelled_at_the_provider_told_by_event(
    ts_env, smtp_sink, registry, registry_path, out: Path
) -> None:
    """From v8: cancelled by hand at the provider; its subscription-updated event makes the
    workflow look, take the cancellation over, record it and close."""
    from tests.support.webhooks import eventually, pushed_stack

    async with pushed_stack(ts_env, smtp_sink, registry, registry_path) as pushed:
        stack = pushed.stack
        from workflows.subscription import SubscriptionWorkflow

        bought = await stack.settle(await stack.submit(example("order-link-ours.json")))
        sub = stack.env.client.get_workflow_handle_for(
            SubscriptionWorkflow.run, f"subscription-{bought.subscription_ids[0]}"
        )
        await stack.first_task_done(sub)
        pushed.sandbox.post(
            f"/sandbox/xvantage/marketplace/subscriptions/{bought.subscription_ids[0]}",
            json={"status": "deleted"},
        ).raise_for_status()

        async def closed() -> bool:
            return (await sub.describe()).close_time is not None

        assert await eventually(closed)
        await save(sub, out, "subscription_cancelled_at_the_provider_by_event")


async def _stage_is(handle: WorkflowHandle, stage: str, stage_of) -> bool:  # noqa: ANN001
    return await stage_of(handle) == stage
