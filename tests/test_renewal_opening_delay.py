"""The monthly cycle starts every renewal first and each begins RENEWAL_OPENING_DELAY_SECONDS
later (RenewalPolicy.opening_delay), so the month's fan-out of starts does not compete with
the renewals already started (issue 11). Started, a renewal is visible to ops at once as
PENDING; its opening notice goes out when it begins, not a second before; a payment recorded
meanwhile is not lost. Real parts: the time-skipping server, the sandbox over HTTP, the SMTP
sink and SQLite."""

from __future__ import annotations

from datetime import timedelta

import pydantic
import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from api import renewals as renewal_api
from csp_core.renewals.billing import next_period, period_of
from csp_core.renewals.values import CycleResult, renewal_workflow_id
from csp_core.settings import Settings
from csp_core.stages import PaymentStatus
from temporalutil import search_attributes as sa
from tests.support.stack import Stack
from tests.test_renewal_workflow import (
    active_subscription,
    advance_to,
    eventually,
    kinds,
    local,
    now,
    status,
)
from workflows.renewal import RenewalPaymentWorkflow

ON_THE_STACK = pytest.mark.asyncio(loop_scope="session")

DEFAULT_DELAY = timedelta(seconds=Settings.model_fields["renewal_opening_delay_seconds"].default)


async def start_next_period(stack: Stack) -> tuple[str, str, WorkflowHandle]:
    """Buy a subscription, open the next period on day 1 08:00 with the default delay; returns
    the subscription, the period and its renewal, started and not begun yet."""
    subscription_id = await active_subscription(stack)
    period = next_period(period_of(await now(stack)))
    await advance_to(stack, local(period, 1, 8))
    settings = stack.settings.model_copy(
        update={"renewal_opening_delay_seconds": int(DEFAULT_DELAY.total_seconds())}
    )
    cycle = await renewal_api.run_period(stack.env.client, period, settings)
    result = await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    assert result.renewals_started == 1
    handle = stack.env.client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(subscription_id, period)
    )
    stack.started.append(handle.id)
    return subscription_id, period, handle


async def events(handle: WorkflowHandle) -> int:
    return len((await handle.fetch_history()).events)


@ON_THE_STACK
async def test_a_renewal_begins_the_opening_delay_after_the_cycle_started_it(
    stack: Stack,
) -> None:
    subscription_id, period, handle = await start_next_period(stack)
    started_at = (await handle.describe()).start_time

    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert described.typed_search_attributes.get(sa.PAYMENT_STATUS) == PaymentStatus.PENDING.value

    await stack.env.sleep(started_at + DEFAULT_DELAY - timedelta(seconds=1) - await now(stack))
    assert await events(handle) == 1  # started, not begun: no task has run
    assert kinds(stack, subscription_id, period) == []

    await stack.env.sleep(timedelta(seconds=1))

    async def notice_sent() -> bool:
        return kinds(stack, subscription_id, period) == ["renewal_notice"]

    assert await eventually(notice_sent)
    assert (await status(handle)).status is PaymentStatus.PENDING


@ON_THE_STACK
async def test_a_payment_recorded_before_the_renewal_begins_settles_it_without_a_notice(
    stack: Stack,
) -> None:
    subscription_id, period, handle = await start_next_period(stack)

    await renewal_api.record_payment(
        stack.env.client, stack.registry, subscription_id, period, "SPEI-EARLY"
    )
    await stack.env.sleep(DEFAULT_DELAY)

    result = await stack.result(handle)
    assert result.status is PaymentStatus.PAID
    assert result.payment_reference == "SPEI-EARLY"
    assert "renewal_notice" not in kinds(stack, subscription_id, period)


@pytest.mark.parametrize("value", ["-1", "21601", "five minutes"])
def test_an_opening_delay_out_of_its_range_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Refused before anything starts (the worker and the CLI load settings first)."""
    monkeypatch.setenv("RENEWAL_OPENING_DELAY_SECONDS", value)

    with pytest.raises(pydantic.ValidationError) as refused:
        Settings()

    assert refused.value.errors()[0]["loc"] == ("renewal_opening_delay_seconds",)
