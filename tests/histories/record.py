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

import pytest
from temporalio.client import WorkflowHandle

from api import renewals as renewal_api
from csp_core.renewals.billing import CutoffPolicy, next_period, period_of
from csp_core.timezones import BUSINESS_TZ
from tests.support.stack import Stack, example
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
