"""SubscriptionWorkflow on the time-skipping test server, started by a real create order, with
the real activities talking to the Partner Center sandbox over HTTP, the SMTP sink and the
registry.

Two clocks decide a seat decrease or a cancel, and the tests say which one each checks:
- the workflow's validator uses workflow time (skipped by `env.sleep`) against the window it
  took from the provider's purchase date (CancellableUntil);
- the sandbox uses the wall clock against its own purchase date; `backdate` moves that date.
At the start of a test both clocks agree to within seconds (the test server starts at the wall
clock), so the workflow's edge is also inside the sandbox's window at 167 h 59 min 59 s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from csp_core.calendar import format_local
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.values import SubscriptionDetails
from csp_core.subscriptions.windows import NCE_CHANGE_WINDOW
from csp_core.timezones import BUSINESS_TZ
from temporalutil import search_attributes as sa
from tests.support.stack import Stack, example
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECOND = timedelta(seconds=1)
CONTOSO = "contosomx.onmicrosoft.com"


async def active_subscription(stack: Stack) -> tuple[WorkflowHandle, str, str]:
    """Run the example create order to ACTIVE; its license's workflow, id and tenant id."""
    order = example("order-create.json")
    result = await stack.settle(await stack.submit(order))
    assert result.stage.value == "ACTIVE"
    [license_] = stack.registry.list_licenses(CONTOSO)
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{license_.subscription_id}"
    )
    await stack.first_task_done(handle)
    return handle, license_.subscription_id, license_.tenant_id


async def update(handle: WorkflowHandle, name: str, *args: Any, id: str) -> SubscriptionDetails:
    method = getattr(SubscriptionWorkflow, name)
    return await handle.execute_update(method, args=list(args), id=id)


async def refusal(handle: WorkflowHandle, name: str, *args: Any, id: str) -> ApplicationError:
    """The reason the caller receives when the change is refused."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await update(handle, name, *args, id=id)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def attributes(handle: WorkflowHandle) -> Any:
    return (await handle.describe()).typed_search_attributes


async def skip_to(stack: Stack, instant: Any) -> None:
    await stack.env.sleep(instant - await stack.env.get_current_time())


async def test_an_active_order_starts_one_subscription_workflow_with_its_attributes(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)

    provider = await stack.provider.get_subscription(tenant_id, sub_id)
    assert provider.effective_start_date is not None
    found = await attributes(handle)
    assert found.get(sa.SUBSCRIPTION_ID) == sub_id
    assert found.get(sa.SUBSCRIPTION_STATUS) == "ACTIVE"
    assert found.get(sa.SEATS) == 10
    assert found.get(sa.AUTO_RENEW) is True
    assert found.get(sa.CANCELLABLE_UNTIL) == provider.effective_start_date + NCE_CHANGE_WINDOW
    assert provider.commitment_end_date is not None
    assert found.get(sa.TERM_ENDS_ON) == provider.commitment_end_date.date().isoformat()
    assert found.get(sa.CUSTOMER_DOMAIN) == CONTOSO
    assert found.get(sa.RESELLER_ID) == "RSL-042"
    details = await handle.query(SubscriptionWorkflow.details)
    assert (details.status, details.seats, details.term.value) == (
        SubscriptionStatus.ACTIVE,
        10,
        "P1Y",
    )


async def test_adding_seats_changes_the_provider_and_the_registry_once_per_request(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)

    first = await update(handle, "add_seats", 5, id="req-add-5")
    again = await update(handle, "add_seats", 5, id="req-add-5")

    assert first.seats == again.seats == 15
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 15
    [license_] = stack.registry.list_licenses(CONTOSO)
    assert license_.quantity == 15
    assert stack.stats()["quantity_changes"] == 1
    assert (await attributes(handle)).get(sa.SEATS) == 15


async def test_removing_seats_at_one_second_before_the_window_end_is_accepted_and_at_it_refused(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    window_end = (await attributes(handle)).get(sa.CANCELLABLE_UNTIL)

    await skip_to(stack, window_end - SECOND)  # 167 h 59 min 59 s after the purchase
    accepted = await update(handle, "set_seats", 9, id="req-9")
    assert accepted.seats == 9
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 9

    await skip_to(stack, window_end)  # 168 h: the workflow refuses, the provider is not asked
    refused = await refusal(handle, "set_seats", 8, id="req-8")
    assert format_local(window_end, BUSINESS_TZ) in refused.message
    assert "Mexico City" in refused.message and "auto-renew off" in refused.message
    assert "reduce the seats at renewal" in refused.message
    cancel_refused = await refusal(handle, "cancel", id="req-cancel")
    assert format_local(window_end, BUSINESS_TZ) in cancel_refused.message
    assert stack.stats()["quantity_changes"] == 1
    assert stack.stats()["subscriptions_cancelled"] == 0
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 9
    # Adding stays possible outside the window.
    assert (await update(handle, "add_seats", 1, id="req-add-1")).seats == 10


async def test_a_provider_window_refusal_reaches_the_caller(stack: Stack) -> None:
    """The sandbox's purchase is moved 8 days back (wall clock) while the workflow still sees
    its window open: the provider's 800090 refusal is what the caller hears."""
    handle, sub_id, tenant_id = await active_subscription(stack)
    assert await stack.env.get_current_time() < (await attributes(handle)).get(sa.CANCELLABLE_UNTIL)
    stack.sandbox.post(
        f"/sandbox/subscriptions/{sub_id}/backdate", json={"days": 8}
    ).raise_for_status()

    refused = await refusal(handle, "set_seats", 9, id="req-9")

    assert "800090" in refused.message and "auto-renew off" in refused.message
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 10
    assert (await handle.query(SubscriptionWorkflow.details)).seats == 10


async def test_fewer_than_one_seat_is_refused(stack: Stack) -> None:
    handle, _, _ = await active_subscription(stack)

    refused = await refusal(handle, "set_seats", 0, id="req-0")

    assert "at least 1 seat" in refused.message and "cancel it" in refused.message
    assert stack.stats()["quantity_changes"] == 0


async def test_a_transfer_is_refused_with_the_rule_and_the_way_out(stack: Stack) -> None:
    handle, sub_id, _ = await active_subscription(stack)

    refused = await refusal(handle, "transfer", "fabrikam.onmicrosoft.com", id="req-transfer")

    assert "a license never leaves its tenant" in refused.message
    assert "csp order submit" in refused.message and '"link"' in refused.message
    assert "fabrikam.onmicrosoft.com" in refused.message
    [license_] = stack.registry.list_licenses(CONTOSO)
    assert license_.subscription_id == sub_id


async def test_cancel_inside_the_window_cancels_everywhere_and_tells_the_reseller(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)

    answer = await update(handle, "cancel", id="req-cancel")
    final = await stack.result(handle)

    assert answer.status is SubscriptionStatus.CANCELLED and final.cancelled_at is not None
    assert (await attributes(handle)).get(sa.SUBSCRIPTION_STATUS) == "CANCELLED"
    assert stack.stats()["subscriptions_cancelled"] == 1
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).status.value == "deleted"
    [license_] = stack.registry.list_licenses(CONTOSO)
    assert license_.status == "cancelled"
    [mail] = [m for m in stack.mails() if str(m["X-CSP-Kind"]) == "subscription_cancelled"]
    assert str(mail["To"]) == "compras@integradoranorte.mx"
    assert sub_id in mail.get_content() and "fue cancelada" in mail.get_content()
