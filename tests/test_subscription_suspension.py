"""An unpaid renewal suspends the subscription (cutoff policy `suspend`) and a payment
reactivates it: the renewal payment workflow does it at the provider and in the registry, and
its activities tell the SubscriptionWorkflow, which refuses every change while suspended, with
the reason and the way out, and accepts them again once reactivated. Time-skipping test
server, a real create order, the renewal cycle, the sandbox over HTTP, SMTP sink, registry."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle

from api import renewals as renewal_api
from csp_core.renewals.billing import CutoffPolicy, next_period, period_of
from csp_core.renewals.values import CycleResult, renewal_workflow_id
from csp_core.stages import PaymentStatus, SubscriptionStatus
from temporalutil import search_attributes as sa
from tests.support.stack import Stack
from tests.test_renewal_workflow import advance_to, local, pay
from tests.test_subscription_lifecycle import details, eventually
from tests.test_subscription_workflow import active_subscription, attributes, refusal, update
from workflows.renewal import RenewalPaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def unpaid_past_the_cutoff(stack: Stack) -> tuple[WorkflowHandle, str, str, WorkflowHandle]:
    """Buy, open the next period on day 1 08:00, nobody pays: past day 26 00:00 (Mexico City)
    the policy suspends it. Returns the subscription's workflow, its id, the period and the
    renewal's workflow."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    handle, sub_id, _ = await active_subscription(stack)
    period = next_period(period_of(await stack.env.get_current_time()))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    started = await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    assert started.renewals_started == 1
    renewal = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(sub_id, period)
    )
    stack.started.append(renewal.id)
    await stack.first_task_done(renewal)
    await advance_to(stack, local(period, 26, 0, 0, 1))
    return handle, sub_id, period, renewal


async def renewal_status(renewal: WorkflowHandle) -> PaymentStatus:
    return (await renewal.query(RenewalPaymentWorkflow.status)).status


async def subscription_status(handle: WorkflowHandle, status: SubscriptionStatus) -> bool:
    return (await attributes(handle)).get(sa.SUBSCRIPTION_STATUS) == status.value


async def test_while_suspended_every_change_is_refused_with_the_reason_and_after_payment_accepted(
    stack: Stack,
) -> None:
    handle, sub_id, period, renewal = await unpaid_past_the_cutoff(stack)
    await eventually(
        lambda: subscription_status(handle, SubscriptionStatus.SUSPENDED), "suspension heard"
    )

    suspended = await details(handle)
    assert (suspended.status, suspended.suspended_for) == (SubscriptionStatus.SUSPENDED, period)
    assert suspended.auto_renew is False  # suspending turns auto-renew off, as at the provider
    assert (await attributes(handle)).get(sa.AUTO_RENEW) is False
    record = stack.registry.get_subscription(sub_id)
    assert record is not None and (record.status, record.auto_renew) == ("suspended", False)
    payment_command = f"csp payment record {sub_id} --period {period}"
    for name, args in (("add_seats", [1]), ("set_seats", [9]), ("cancel", []),
                       ("set_auto_renew", [True])):  # fmt: skip
        refused = await refusal(handle, name, *args, id=f"req-{name}")
        assert "SUSPENDED" in refused.message, name
        assert f"unpaid renewal charge of {period}" in refused.message, name
        assert payment_command in refused.message, name
    assert (stack.stats()["quantity_changes"], stack.stats()["auto_renew_changes"]) == (0, 0)

    await pay(stack, sub_id, period)
    await eventually(
        lambda: subscription_status(handle, SubscriptionStatus.ACTIVE), "reactivation heard"
    )

    assert (await details(handle)).suspended_for is None
    assert (await update(handle, "add_seats", 1, id="req-add-after")).seats == 11
    assert (await update(handle, "set_auto_renew", True, id="req-renew-on")).auto_renew is True
    tenant = stack.registry.list_licenses("contosomx.onmicrosoft.com")[0].tenant_id
    provider = await stack.provider.get_subscription(tenant, sub_id)
    assert provider.status.value == "active"
    assert (provider.quantity, provider.auto_renew_enabled) == (11, True)
    assert await renewal_status(renewal) is PaymentStatus.REACTIVATED


async def test_a_subscription_without_its_workflow_is_still_suspended_and_reactivated(
    stack: Stack,
) -> None:
    """Bought before subscription workflows (or its workflow is over): the renewal's
    activities have nobody to tell, and that fails nothing."""
    stack.settings = stack.settings.model_copy(
        update={"renewal_cutoff_policy": CutoffPolicy.SUSPEND}
    )
    handle, sub_id, _ = await active_subscription(stack)
    await handle.terminate("as if bought before subscription workflows")
    period = next_period(period_of(await stack.env.get_current_time()))
    await advance_to(stack, local(period, 1, 8))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    renewal = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(sub_id, period)
    )
    stack.started.append(renewal.id)
    await stack.first_task_done(renewal)
    await advance_to(stack, local(period, 26, 0, 0, 1))

    async def suspended() -> bool:
        return await renewal_status(renewal) is PaymentStatus.SUSPENDED

    await eventually(suspended, "suspension")
    assert stack.registry.get_subscription(sub_id).status == "suspended"
    await pay(stack, sub_id, period)
    result = await stack.result(renewal)

    assert result.status is PaymentStatus.REACTIVATED and not result.ops_attention
    assert stack.registry.get_subscription(sub_id).status == "active"
    counts = stack.stats()
    assert (counts["subscriptions_suspended"], counts["subscriptions_reactivated"]) == (1, 1)
