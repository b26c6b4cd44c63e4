"""A subscription's life over its terms, on the time-skipping test server, started by a real
create order, with the real activities talking to the Partner Center sandbox over HTTP, the
SMTP sink and the registry: renewal at the anniversary with a new 168 h window, expiry with the
30- and 7-day notices, suspension and reactivation by the renewal payment, and continue-as-new
keeping the answers to requests already made.

Time moves by `env.sleep` to each instant under test (one second before, then the instant).
The workflow's own work after a timer (asking the provider, writing the registry, e-mails)
runs on the wall clock with time skipping locked, so the tests wait for its outcome
(`eventually`) before moving time again.

The sandbox's clock is the wall clock: it never reaches the anniversary the workflow reaches,
so at the term's end it still shows the first term, and the workflow computes the next one
itself (the provider's dates win only when they are newer).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest
from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from api import renewals as renewal_api
from csp_core.calendar import format_datetime_es, format_local
from csp_core.renewals.billing import next_period, period_of
from csp_core.renewals.values import CycleResult
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.terms import expiry_notice_at, term_end, term_end_instant
from csp_core.subscriptions.values import SubscriptionDetails, SubscriptionStart
from csp_core.subscriptions.windows import NCE_CHANGE_WINDOW
from csp_core.timezones import BUSINESS_TZ
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from tests.support.stack import Stack
from tests.test_subscription_workflow import (
    active_subscription,
    attributes,
    refusal,
    skip_to,
    update,
)
from worker import create_worker
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECOND = timedelta(seconds=1)
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], what: str) -> T:
    """The workflow's work after a timer runs on the wall clock: wait for its outcome."""
    for _ in range(400):
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def details(handle: WorkflowHandle) -> SubscriptionDetails:
    return await handle.query(SubscriptionWorkflow.details)


def mails(stack: Stack, kind: str) -> list[EmailMessage]:
    return [m for m in stack.mails() if str(m["X-CSP-Kind"]) == kind]


async def wait_mails(stack: Stack, kind: str, count: int = 1) -> list[EmailMessage]:
    """Until `count` e-mails of `kind` reached the sink (notices go out in the background)."""

    async def arrived() -> list[EmailMessage]:
        found = mails(stack, kind)
        return found if len(found) >= count else []

    return await eventually(arrived, f"{count} {kind} e-mail(s)")


def key(mail: EmailMessage) -> str:
    return "".join(str(mail["X-CSP-Key"]).split())  # a long key is folded onto two lines


async def term_of(stack: Stack, handle: WorkflowHandle) -> tuple[datetime, datetime]:
    """The current term's last day (as the provider dated it) and its end (the anniversary)."""
    last_day = (await details(handle)).term_ends_at
    return last_day, term_end_instant(last_day)


async def run_id(handle: WorkflowHandle) -> str:
    return (await handle.describe()).run_id or ""


async def renewed(handle: WorkflowHandle, term_run: str) -> SubscriptionDetails:
    """Until the term that `term_run` ran was renewed and the next term runs in a new run."""

    async def done() -> SubscriptionDetails | None:
        if await run_id(handle) == term_run:
            return None
        found = await details(handle)
        return found if found.renewals >= 1 else None

    return await eventually(done, "renewal")


# --------------------------------------------------------------------------- renewal


async def test_auto_renew_on_renews_at_the_anniversary_with_a_new_window_and_an_email(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    first_run = await run_id(handle)
    last_day, anniversary = await term_of(stack, handle)
    provider = await stack.provider.get_subscription(tenant_id, sub_id)
    assert provider.commitment_end_date == last_day  # the provider's date, as it gave it

    await skip_to(stack, anniversary - SECOND)
    before = await details(handle)
    assert (before.renewals, before.term_ends_at) == (0, last_day)

    await skip_to(stack, anniversary)
    after = await renewed(handle, first_run)

    new_last_day = term_end(anniversary, after.term)
    assert after.status is SubscriptionStatus.ACTIVE
    assert (after.term_started_at, after.term_ends_at) == (anniversary, new_last_day)
    assert after.cancellable_until == anniversary + NCE_CHANGE_WINDOW
    found = await attributes(handle)
    assert found.get(sa.TERM_ENDS_ON) == new_last_day.date().isoformat()
    assert found.get(sa.CANCELLABLE_UNTIL) == anniversary + NCE_CHANGE_WINDOW
    assert found.get(sa.SUBSCRIPTION_STATUS) == "ACTIVE" and found.get(sa.SEATS) == 10
    # The next term runs in a new run of the same workflow.
    old = await stack.env.client.get_workflow_handle(handle.id, run_id=first_run).describe()
    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    record = stack.registry.get_subscription(sub_id)
    assert record is not None and record.status == "active"
    assert (record.term_started_at, record.term_ends_at) == (anniversary, new_last_day)
    [mail] = await wait_mails(stack, "subscription_renewed")
    assert str(mail["To"]) == "compras@integradoranorte.mx"
    assert key(mail) == f"subscription-{sub_id}:term-{new_last_day.date().isoformat()}:renewed"
    text = mail.get_content()
    assert "se renovó automáticamente" in text
    assert format_datetime_es(anniversary + NCE_CHANGE_WINDOW, BUSINESS_TZ) in text


async def test_after_a_renewal_seats_can_be_removed_until_168_hours_after_it_and_not_at_168(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    first_run = await run_id(handle)
    _, anniversary = await term_of(stack, handle)
    await skip_to(stack, anniversary)
    window_end = (await renewed(handle, first_run)).cancellable_until
    assert window_end == anniversary + timedelta(hours=168)

    await skip_to(stack, window_end - SECOND)  # 167 h 59 min 59 s after the renewal
    accepted = await update(handle, "set_seats", 9, id="req-9")
    assert accepted.seats == 9
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 9

    await skip_to(stack, window_end)  # 168 h: refused by the workflow, the provider not asked
    refused = await refusal(handle, "set_seats", 8, id="req-8")
    assert format_local(window_end, BUSINESS_TZ) in refused.message
    assert "Mexico City" in refused.message and "auto-renew off" in refused.message
    cancel_refused = await refusal(handle, "cancel", id="req-cancel")
    assert format_local(window_end, BUSINESS_TZ) in cancel_refused.message
    assert stack.stats()["quantity_changes"] == 1
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 9


async def test_a_request_repeated_after_continue_as_new_gets_its_first_answer(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    first = await update(handle, "add_seats", 5, id="req-add-5")
    first_run = await run_id(handle)
    _, anniversary = await term_of(stack, handle)
    await skip_to(stack, anniversary)
    await renewed(handle, first_run)  # continued as new

    again = await update(handle, "add_seats", 5, id="req-add-5")

    assert again == first and again.seats == 15
    assert (await details(handle)).seats == 15
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 15
    assert stack.stats()["quantity_changes"] == 1
    # A new request id is a new change.
    assert (await update(handle, "add_seats", 1, id="req-add-1")).seats == 16


# --------------------------------------------------------------------------- expiry


async def test_auto_renew_off_sends_the_30_and_7_day_notices_at_their_instants_then_expires(
    stack: Stack,
) -> None:
    handle, sub_id, _ = await active_subscription(stack)
    await update(handle, "set_auto_renew", False, id="req-off")
    last_day, anniversary = await term_of(stack, handle)
    notice_30 = expiry_notice_at(last_day, 30, BUSINESS_TZ)
    notice_7 = expiry_notice_at(last_day, 7, BUSINESS_TZ)
    assert (notice_30.astimezone(BUSINESS_TZ).hour, notice_30.minute) == (9, 0)

    for days, at in ((30, notice_30), (7, notice_7)):
        await skip_to(stack, at - SECOND)
        assert (await details(handle)).next_notice_at == at  # still ahead
        assert len(mails(stack, "subscription_expiring")) == (0 if days == 30 else 1)
        await skip_to(stack, at)
        sent = await wait_mails(stack, "subscription_expiring", 1 if days == 30 else 2)
        assert key(sent[-1]).endswith(f":expiring-{days}d")
        assert f"vence en {days} días" in str(sent[-1]["Subject"])

    await skip_to(stack, anniversary - SECOND)
    assert (await details(handle)).status is SubscriptionStatus.ACTIVE
    await skip_to(stack, anniversary)
    final = await eventually(lambda: _closed(handle), "expiry")

    assert final.status is SubscriptionStatus.EXPIRED
    assert anniversary <= final.expired_at < anniversary + timedelta(minutes=1)
    assert (await attributes(handle)).get(sa.SUBSCRIPTION_STATUS) == "EXPIRED"
    record = stack.registry.get_subscription(sub_id)
    assert record is not None and record.status == "expired" and record.auto_renew is False
    [mail] = await wait_mails(stack, "subscription_expired")
    assert "venció el" in mail.get_content()
    assert len(mails(stack, "subscription_expiring")) == 2
    # No renewal charge afterwards: the next period's cycle charges it nothing.
    period = next_period(period_of(await stack.env.get_current_time()))
    cycle = await renewal_api.run_period(stack.env.client, period, stack.settings)
    outcome = await stack.env.client.get_workflow_handle(cycle.id, result_type=CycleResult).result()
    assert outcome.renewals_started == 0
    assert stack.registry.get_charge(sub_id, period) is None


async def test_a_notice_due_while_auto_renew_is_on_is_not_sent_and_turning_it_on_renews(
    stack: Stack,
) -> None:
    handle, _, _ = await active_subscription(stack)
    await update(handle, "set_auto_renew", False, id="req-off")
    first_run = await run_id(handle)
    last_day, anniversary = await term_of(stack, handle)
    await skip_to(stack, expiry_notice_at(last_day, 30, BUSINESS_TZ))
    await wait_mails(stack, "subscription_expiring")

    await update(handle, "set_auto_renew", True, id="req-on")
    await skip_to(stack, expiry_notice_at(last_day, 7, BUSINESS_TZ))

    async def seven_day_notice_passed() -> bool:
        return (await details(handle)).next_notice_at is None

    await eventually(seven_day_notice_passed, "the 7-day notice's instant")  # due...
    await skip_to(stack, anniversary)
    after = await renewed(handle, first_run)

    assert len(mails(stack, "subscription_expiring")) == 1  # ...and not sent
    assert after.status is SubscriptionStatus.ACTIVE and after.term_started_at == anniversary
    await wait_mails(stack, "subscription_renewed")


# --------------------------------------------------------------------------- outside changes


async def test_a_cancel_made_at_the_provider_is_taken_over_at_the_term_end(stack: Stack) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    await stack.provider.cancel_subscription(tenant_id, sub_id, request_id=str(uuid.uuid4()))
    _, anniversary = await term_of(stack, handle)

    await skip_to(stack, anniversary)
    final = await eventually(lambda: _closed(handle), "the term's end")

    assert final.status is SubscriptionStatus.CANCELLED and final.renewals == 0
    assert (await attributes(handle)).get(sa.SUBSCRIPTION_STATUS) == "CANCELLED"
    record = stack.registry.get_subscription(sub_id)
    assert record is not None and record.status == "cancelled"
    assert record.cancelled_at is not None
    assert not mails(stack, "subscription_renewed") and not mails(stack, "subscription_expired")


async def test_auto_renew_turned_off_at_the_provider_expires_it_instead_of_renewing(
    stack: Stack,
) -> None:
    handle, sub_id, tenant_id = await active_subscription(stack)
    await stack.provider.set_auto_renew(tenant_id, sub_id, False, request_id=str(uuid.uuid4()))
    assert (await details(handle)).auto_renew is True  # the workflow was not told
    _, anniversary = await term_of(stack, handle)

    await skip_to(stack, anniversary)
    final = await eventually(lambda: _closed(handle), "the term's end")

    assert (final.status, final.auto_renew) == (SubscriptionStatus.EXPIRED, False)
    found = await attributes(handle)
    assert (found.get(sa.SUBSCRIPTION_STATUS), found.get(sa.AUTO_RENEW)) == ("EXPIRED", False)
    assert stack.registry.get_subscription(sub_id).status == "expired"
    await wait_mails(stack, "subscription_expired")


async def _closed(handle: WorkflowHandle) -> Any:
    if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        return None
    return await handle.result()


# --------------------------------------------------------------------------- v5 workflows


@workflow.defn(name="SubscriptionWorkflow", sandboxed=False)
class V5SubscriptionWorkflow:
    """Stands in for a workflow the v5 code started: its first task sent no command, then it
    waited for a cancel (what the saved v5 history shows)."""

    @workflow.run
    async def run(self, start: SubscriptionStart) -> None:
        await workflow.wait_condition(lambda: False)


async def test_a_workflow_started_before_terms_follows_them_once_told(stack: Stack) -> None:
    handle, sub_id, _ = await active_subscription(stack)
    history = await handle.fetch_history()
    [start] = await DATA_CONVERTER.decode(
        history.events[0].workflow_execution_started_event_attributes.input.payloads,
        [SubscriptionStart],
    )
    await handle.terminate("replaced by one the v5 code started")
    queue = f"{stack.task_queue}-v5"
    async with Worker(
        stack.env.client,
        task_queue=queue,
        workflows=[V5SubscriptionWorkflow],
        max_cached_workflows=0,
    ):
        v5 = await stack.env.client.start_workflow(
            "SubscriptionWorkflow", start, id=handle.id, task_queue=queue
        )
        await stack.first_task_done(v5)

    async with create_worker(stack.env.client, queue, stack.activities(), strict_sandbox=True):
        handle = stack.env.client.get_workflow_handle_for(SubscriptionWorkflow.run, handle.id)
        assert (await details(handle)).next_notice_at is None  # replayed as v5: no terms

        await handle.signal(SubscriptionWorkflow.follow_terms)

        async def following() -> SubscriptionDetails | None:
            found = await details(handle)
            return found if found.next_notice_at is not None else None

        found = await eventually(following, "the terms followed")
        record = stack.registry.get_subscription(sub_id)
        assert record is not None and record.term_ends_at == found.term_ends_at
        first_run = await run_id(handle)
        anniversary = term_end_instant(found.term_ends_at)
        await skip_to(stack, anniversary)
        assert (await renewed(handle, first_run)).term_started_at == anniversary
