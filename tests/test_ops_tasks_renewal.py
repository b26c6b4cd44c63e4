"""A suspension and a reactivation at the renewal cutoff under Ingram, whose Xvantage API has
neither: the renewal asks ops (an ops task: AWAITING_OPS, OPS_ACTION_REQUIRED, an e-mail with
the exact values), reminds them at each reminder instant, escalates at the deadline, and counts
nothing as done until ops confirm it. Real parts: the Ingram adapter against the sandbox's
Xvantage face, where ops' manual work is the face's marketplace control."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import pytest
from temporalio.client import WorkflowHandle

from api import ops as ops_api
from csp_core.ops.tasks import OpsOperation, OpsTask, OpsTaskStatus
from csp_core.renewals.billing import CutoffPolicy
from csp_core.stages import PaymentStatus, SubscriptionStatus
from csp_core.subscriptions.values import subscription_workflow_id
from tests.support import ingram as on_ingram
from tests.support.ingram import at_ingram, xvantage
from tests.support.stack import OPS_EMAIL, Stack
from tests.test_renewal_workflow import (
    advance_to,
    current_details,
    eventually,
    kinds,
    local,
    open_period,
    ops_attention,
    pay,
    status,
)
from workflows.renewal import RenewalPaymentWorkflow
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
ingram = on_ingram.ingram  # the fixture: the stack on the Ingram adapter


@pytest.fixture(autouse=True)
def suspend_at_the_cutoff(ingram: Stack) -> None:
    ingram.settings = ingram.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )


def reseller_kinds(stack: Stack, subscription_id: str, period: str) -> list[str]:
    """The renewal's e-mails to the reseller (its ops task e-mails go to ops)."""
    return [k for k in kinds(stack, subscription_id, period) if not k.startswith("ops_task")]


async def tasks(handle: WorkflowHandle) -> list[OpsTask]:
    return (await handle.query(RenewalPaymentWorkflow.status)).ops_tasks


def ops_mails(stack: Stack, kind: str, task_id: str | None = None) -> list[EmailMessage]:
    return [
        m
        for m in stack.mails()
        if str(m["X-CSP-Kind"]) == kind and (task_id is None or task_id in str(m["Subject"]))
    ]


async def _async(value):  # an awaitable for `eventually`
    return value


async def subscription_status(stack: Stack, subscription_id: str) -> SubscriptionStatus:
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, subscription_workflow_id(subscription_id)
    )
    return (await handle.query(SubscriptionWorkflow.details)).status


async def asked_to_suspend(stack: Stack) -> tuple[str, str, WorkflowHandle, OpsTask]:
    """Nobody pays; at the cutoff the renewal asks ops to suspend (Ingram has no API)."""
    subscription_id, period, handle = await open_period(stack)
    await advance_to(stack, local(period, 26, 0, 0, 1))
    [task] = await eventually(lambda: tasks(handle))
    return subscription_id, period, handle, task


async def test_the_cutoff_suspension_under_ingram_waits_for_ops_and_reminds_them_on_time(
    ingram: Stack,
) -> None:
    subscription_id, period, handle, task = await asked_to_suspend(ingram)

    # Raised at the cutoff instant, for ops, with the values they need; nothing done yet.
    assert task.operation is OpsOperation.SUSPEND and task.task_id == f"suspend-{period}"
    assert task.provider == "Ingram Micro Xvantage"
    assert task.asked_at.replace(microsecond=0) == local(period, 26)
    assert task.deadline == task.asked_at + timedelta(hours=24)
    assert (await status(handle)).status is PaymentStatus.AWAITING_OPS
    assert await ops_attention(handle) == ["OPS_ACTION_REQUIRED"]
    details = await current_details(handle)
    assert f"csp ops confirm {handle.id} suspend-{period}" in details
    asked = (await eventually(lambda: _async(ops_mails(ingram, "ops_task"))))[0]
    assert str(asked["To"]) == OPS_EMAIL
    assert subscription_id in asked.get_content() and "Suspender" in asked.get_content()
    assert ingram.registry.get_subscription(subscription_id).status == "active"
    assert xvantage(ingram)["subscriptions_suspended"] == 0
    assert "renewal_suspended" not in kinds(ingram, subscription_id, period)

    # The first reminder 4 h after it was asked: not a second before, at the instant.
    reminder_at = task.asked_at + timedelta(hours=4)
    await advance_to(ingram, reminder_at - timedelta(seconds=1))
    assert (await tasks(handle))[0].reminders_sent == 0
    assert ops_mails(ingram, "ops_task_reminder") == []
    await advance_to(ingram, reminder_at)
    await eventually(lambda: _async(ops_mails(ingram, "ops_task_reminder")))
    assert (await tasks(handle))[0].reminders_sent == 1

    # Ops suspend it in Ingram's marketplace, then confirm: only now is it SUSPENDED.
    at_ingram(ingram, subscription_id, status="suspended")
    confirmed = await ops_api.confirm_task(
        ingram.env.client, handle.id, task.task_id, "IM-CASE-4711", "done in Cloud Marketplace"
    )
    assert confirmed.status is OpsTaskStatus.CONFIRMED

    async def suspended() -> bool:
        return (await status(handle)).status is PaymentStatus.SUSPENDED

    await eventually(suspended)
    assert ingram.registry.get_subscription(subscription_id).status == "suspended"
    assert await ops_attention(handle) == []
    assert await subscription_status(ingram, subscription_id) is SubscriptionStatus.SUSPENDED
    await eventually(lambda: _async("renewal_suspended" in kinds(ingram, subscription_id, period)))
    assert xvantage(ingram)["subscriptions_suspended"] == 1
    [done] = await tasks(handle)
    assert (done.reference, done.provider_view) == ("IM-CASE-4711", None)

    # Asked again, the answer is a refusal with the reason (the CLI exits 3).
    with pytest.raises(ops_api.OpsTaskRefused, match="already CONFIRMED"):
        await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-CASE-4712")
    with pytest.raises(ops_api.OpsTaskRefused, match="no ops task 'suspend-1999-01'"):
        await ops_api.confirm_task(ingram.env.client, handle.id, "suspend-1999-01", "X")


async def test_a_late_payment_under_ingram_asks_ops_to_reactivate_and_waits_for_them(
    ingram: Stack,
) -> None:
    subscription_id, period, handle, task = await asked_to_suspend(ingram)
    at_ingram(ingram, subscription_id, status="suspended")
    await ops_api.confirm_task(ingram.env.client, handle.id, task.task_id, "IM-CASE-1")

    async def suspended() -> bool:
        return (await status(handle)).status is PaymentStatus.SUSPENDED

    await eventually(suspended)
    await advance_to(ingram, local(period, 28, 11))
    await pay(ingram, subscription_id, period, "SPEI-LATE")

    reactivation = await eventually(lambda: _reactivation(handle))
    assert reactivation.deadline == reactivation.asked_at + timedelta(hours=4)
    assert (await status(handle)).status is PaymentStatus.AWAITING_OPS
    assert await ops_attention(handle) == ["OPS_ACTION_REQUIRED"]
    assert ingram.registry.get_subscription(subscription_id).status == "suspended"
    # The customer paid: reactivation cannot be declined.
    with pytest.raises(ops_api.OpsTaskRefused, match="cannot be declined"):
        await ops_api.decline_task(ingram.env.client, handle.id, reactivation.task_id, "no")

    at_ingram(ingram, subscription_id, status="active")
    await ops_api.confirm_task(ingram.env.client, handle.id, reactivation.task_id, "IM-CASE-2")
    result = await ingram.result(handle)

    assert result.status is PaymentStatus.REACTIVATED and result.paid_late
    assert result.ops_attention == []
    assert ingram.registry.get_subscription(subscription_id).status == "active"
    assert await subscription_status(ingram, subscription_id) is SubscriptionStatus.ACTIVE
    assert reseller_kinds(ingram, subscription_id, period)[-3:] == [
        "renewal_at_risk", "renewal_suspended", "renewal_reactivated"
    ]  # fmt: skip
    counted = xvantage(ingram)
    assert (counted["subscriptions_suspended"], counted["subscriptions_reactivated"]) == (1, 1)


async def _reactivation(handle: WorkflowHandle) -> OpsTask | None:
    found = [t for t in await tasks(handle) if t.operation is OpsOperation.REACTIVATE]
    return found[0] if found else None


async def test_an_unanswered_suspension_escalates_at_its_deadline_and_is_never_taken_as_done(
    ingram: Stack,
) -> None:
    subscription_id, period, handle, task = await asked_to_suspend(ingram)

    await advance_to(ingram, task.deadline - timedelta(seconds=1))
    assert await ops_attention(handle) == ["OPS_ACTION_REQUIRED"]
    assert ops_mails(ingram, "ops_task_overdue") == []
    await advance_to(ingram, task.deadline)

    async def escalated() -> list[str]:
        flags = await ops_attention(handle)
        return flags if "OPS_TASK_OVERDUE" in flags else []

    assert await eventually(escalated) == ["OPS_ACTION_REQUIRED", "OPS_TASK_OVERDUE"]
    overdue = (await eventually(lambda: _async(ops_mails(ingram, "ops_task_overdue"))))[0]
    assert "NO realizada" in overdue.get_content()
    assert len(ops_mails(ingram, "ops_task_reminder")) == 5  # every 4 h before the deadline
    assert (await status(handle)).status is PaymentStatus.AWAITING_OPS
    assert "OVERDUE" in await current_details(handle)
    assert ingram.registry.get_subscription(subscription_id).status == "active"
    assert xvantage(ingram)["subscriptions_suspended"] == 0

    # Paid meanwhile: the task is withdrawn (ops are told), the charge PAID, never suspended.
    await pay(ingram, subscription_id, period, "SPEI-LATE")
    result = await ingram.result(handle)

    assert result.status is PaymentStatus.PAID and result.ops_attention == []
    [withdrawn] = result.ops_tasks
    assert withdrawn.status is OpsTaskStatus.WITHDRAWN and "paid" in (withdrawn.note or "")
    assert ops_mails(ingram, "ops_task_withdrawn")
    sent = reseller_kinds(ingram, subscription_id, period)
    assert "renewal_suspended" not in sent and sent[-1] == "payment_received"
    assert ingram.registry.get_subscription(subscription_id).status == "active"
