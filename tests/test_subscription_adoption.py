"""Adopting what already exists: the provider's subscriptions on our tenants, bought before this
system or activated before this release, taken over by a SubscriptionWorkflow each with their
real purchase dates. On the real stack (tests/support/stack.py): the time-skipping test server,
a worker with the real activities, the sandbox over HTTP (which seeds northwind with a
subscription bought 10 days ago), the SMTP sink and the registry; the CLI as a subprocess.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from temporalio.client import WorkflowHandle

from api import subscriptions as subscription_api
from csp_core.calendar import format_local
from csp_core.orders.models import Order
from csp_core.providers.port import OrderLine, SubscriptionStatus
from csp_core.registry import NewSubscription
from csp_core.stages import SubscriptionStatus as LicenseStatus
from csp_core.subscriptions.adoption import AdoptionReport
from csp_core.subscriptions.values import SubscriptionDetails
from csp_core.subscriptions.windows import NCE_CHANGE_WINDOW
from csp_core.timezones import BUSINESS_TZ
from sandbox.state import NORTHWIND_LEGACY_SUBSCRIPTION as LEGACY
from sandbox.state import NORTHWIND_TENANT
from temporalutil import search_attributes as sa
from tests.support.cli import csp, one_line, stack_env
from tests.support.stack import Stack, example
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

NORTHWIND = "northwind.onmicrosoft.com"
CONTOSO = "contosomx.onmicrosoft.com"
EXIT_REFUSED = 3


async def active(stack: Stack, order: Order) -> Order:
    result = await stack.settle(await stack.submit(order))
    assert result.stage.value == "ACTIVE"
    return order


async def adopt(stack: Stack, domain: str, **prices: str) -> AdoptionReport:
    return await subscription_api.adopt(
        stack.env.client,
        stack.registry,
        domain,
        stack.settings,
        {sku.replace("_", ":"): Decimal(p) for sku, p in prices.items()},
    )


def legacy_handle(stack: Stack) -> WorkflowHandle[SubscriptionWorkflow, SubscriptionDetails]:
    return stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{LEGACY}"
    )


async def test_done_when_after_adoption_removing_a_seat_is_refused_and_adding_one_succeeds(
    stack: Stack,
) -> None:
    """The issue's flow: the example orders ACTIVE, then `csp subscriptions adopt --domain
    northwind.onmicrosoft.com`; the 10-day-old subscription is outside its window."""
    contoso = await active(stack, example("order-create.json"))
    await active(stack, example("order-link-ours.json"))
    env = stack_env(stack)
    bought = (await stack.provider.get_subscription(NORTHWIND_TENANT, LEGACY)).creation_date
    assert bought is not None
    window_end = bought + NCE_CHANGE_WINDOW

    adopted = await csp(env, "subscriptions", "adopt", "--domain", NORTHWIND)

    assert adopted.returncode == 0, adopted.stderr
    summary, *lines = adopted.stdout.splitlines()
    assert summary == f"{NORTHWIND}: 1 adopted, 2 already managed, 0 skipped"
    [legacy_line] = [line for line in lines if line.startswith("  adopted")]
    assert LEGACY in legacy_line and "Microsoft 365 Business Basic × 8" in legacy_line
    assert f"window closed at {format_local(window_end, BUSINESS_TZ)}" in legacy_line
    assert f"129.00 MXN per seat as last sold (order {contoso.order_id} on {CONTOSO})" in (
        legacy_line
    )
    # Registry: recorded with no order, with the provider's dates.
    record = stack.registry.get_subscription(LEGACY)
    assert record is not None and record.order_id is None
    assert (record.activated_at, record.term_started_at) == (bought, bought)
    assert record.status.value == "active" and record.quantity == 8
    # Its workflow: the real window, the tenant's reseller and the contact of its order.
    handle = legacy_handle(stack)
    found = (await handle.describe()).typed_search_attributes
    assert found.get(sa.CANCELLABLE_UNTIL) == window_end
    assert (found.get(sa.CUSTOMER_DOMAIN), found.get(sa.RESELLER_ID)) == (NORTHWIND, "RSL-042")
    assert found.get(sa.SUBSCRIPTION_STATUS) == "ACTIVE" and found.get(sa.SEATS) == 8

    removed = await csp(env, "subscription", "seats", LEGACY, "--quantity", "7")
    assert removed.returncode == EXIT_REFUSED, removed.stderr
    assert f"that window ended at {format_local(window_end, BUSINESS_TZ)} (Mexico City)" in (
        removed.stderr
    )
    assert "turn auto-renew off" in removed.stderr
    added = await csp(env, "subscription", "seats", LEGACY, "--add", "1")
    assert added.returncode == 0, added.stderr
    assert (await stack.provider.get_subscription(NORTHWIND_TENANT, LEGACY)).quantity == 9
    assert stack.stats()["quantity_changes"] == 1
    assert stack.registry.get_subscription(LEGACY).quantity == 9  # type: ignore[union-attr]

    # Adopting again changes nothing.
    again = await csp(env, "subscriptions", "adopt", "--domain", NORTHWIND)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"{NORTHWIND}: 0 adopted, 3 already managed, 0 skipped"
    assert (await handle.query(SubscriptionWorkflow.details)).seats == 9
    # Its order's two lines and the legacy one.
    assert len(stack.registry.list_licenses(NORTHWIND)) == 3


async def test_a_tenant_the_registry_does_not_know_is_refused_with_the_way_out(
    stack: Stack,
) -> None:
    result = await csp(stack_env(stack), "subscriptions", "adopt", "--domain", NORTHWIND)

    assert result.returncode == EXIT_REFUSED, result.stderr
    reason = one_line(result.stderr)
    assert f"tenant {NORTHWIND} is not one the registry knows" in reason
    assert "csp order submit" in reason and '"link"' in reason
    assert stack.registry.get_subscription(LEGACY) is None
    bad = await csp(stack_env(stack), "subscriptions", "adopt", "--domain", "northwind")
    assert bad.returncode == 2 and "--domain: must be the tenant's initial" in bad.stderr


async def test_a_sku_never_sold_waits_for_its_price_and_a_suspended_one_is_skipped(
    stack: Stack,
) -> None:
    await active(stack, example("order-link-ours.json"))
    placed = await stack.provider.place_order(
        NORTHWIND_TENANT,
        [
            OrderLine(
                line_number=0,
                offer_id="CFQ7TTC0LCHC:0002",
                quantity=2,
                term_duration="P1M",
                billing_cycle="monthly",
            )
        ],
        request_id=str(uuid.uuid4()),
    )
    [suspended] = placed.subscriptions
    await stack.provider.set_subscription_status(
        NORTHWIND_TENANT,
        suspended.subscription_id,
        SubscriptionStatus.SUSPENDED,
        request_id=str(uuid.uuid4()),
    )

    first = await adopt(stack, NORTHWIND)

    assert (first.adopted, len(first.already_managed)) == ([], 2)
    why = {s.subscription_id: s.reason for s in first.skipped}
    assert "no unit price known for CFQ7TTC0LH18:0001" in why[LEGACY]
    assert f"--domain {NORTHWIND} --price CFQ7TTC0LH18:0001=<MXN>" in why[LEGACY]
    assert why[suspended.subscription_id].startswith("suspended at the provider")
    assert stack.registry.get_subscription(LEGACY) is None  # nothing recorded without a price

    second = await adopt(stack, NORTHWIND, CFQ7TTC0LH18_0001="135.50")

    [legacy] = second.adopted
    assert (legacy.subscription_id, legacy.unit_price, legacy.price_source) == (
        LEGACY,
        Decimal("135.50"),
        "as given",
    )
    details = await legacy_handle(stack).query(SubscriptionWorkflow.details)
    assert details.unit_price == Decimal("135.50") and details.reseller_id == "RSL-042"
    assert stack.registry.get_subscription(LEGACY).unit_price == Decimal("135.50")  # type: ignore[union-attr]


async def test_a_license_activated_before_this_release_is_taken_over_with_its_order(
    stack: Stack,
) -> None:
    """Recorded and active in the registry by an order of an earlier release, which started no
    SubscriptionWorkflow: adoption starts one with that order's data and reseller."""
    await active(stack, example("order-link-ours.json"))
    placed = await stack.provider.place_order(
        NORTHWIND_TENANT,
        [
            OrderLine(
                line_number=0,
                offer_id="CFQ7TTC0LDPB:0001",
                quantity=4,
                term_duration="P1Y",
                billing_cycle="annual",
            )
        ],
        request_id=str(uuid.uuid4()),
    )
    [old] = placed.subscriptions
    registry = stack.registry
    registry.record_order("OLD-1", "f" * 64, "RSL-077", NORTHWIND, "link", "Bajío", "v@b.mx")
    registry.add_tenant_reseller(NORTHWIND, "RSL-077")
    registry.record_subscriptions(
        "OLD-1",
        NORTHWIND,
        [
            NewSubscription(
                subscription_id=old.subscription_id,
                sku="CFQ7TTC0LDPB:0001",
                product_name="M365 Business Standard",
                quantity=4,
                term="P1Y",
                billing_cycle="annual",
                unit_price=Decimal("3000.00"),
            )
        ],
    )
    registry.set_subscription_status(old.subscription_id, "active", old.creation_date)

    report = await adopt(stack, NORTHWIND, CFQ7TTC0LH18_0001="129.00")

    assert {a.subscription_id for a in report.adopted} == {old.subscription_id, LEGACY}
    taken = next(a for a in report.adopted if a.subscription_id == old.subscription_id)
    assert (taken.unit_price, taken.price_source) == (Decimal("3000.00"), "as recorded")
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{old.subscription_id}"
    )
    details = await handle.query(SubscriptionWorkflow.details)
    assert (details.reseller_id, details.product_name, details.seats) == (
        "RSL-077",
        "M365 Business Standard",
        4,
    )
    assert details.status is LicenseStatus.ACTIVE
    record = registry.get_subscription(old.subscription_id)
    assert record is not None and record.order_id == "OLD-1"
    assert record.term_started_at == old.effective_start_date  # filled in from the provider


async def test_without_a_domain_every_known_tenant_is_adopted(stack: Stack) -> None:
    await active(stack, example("order-create.json"))
    await active(stack, example("order-link-ours.json"))

    result = await csp(stack_env(stack), "subscriptions", "adopt", "--json")

    assert result.returncode == 0, result.stderr
    reports = {r["domain"]: r for r in json.loads(result.stdout)}
    assert set(reports) == {CONTOSO, NORTHWIND}
    assert [a["subscription_id"] for a in reports[NORTHWIND]["adopted"]] == [LEGACY]
    assert reports[CONTOSO]["adopted"] == [] and len(reports[CONTOSO]["already_managed"]) == 1


async def test_a_subscription_whose_workflow_was_terminated_is_taken_over_again(
    stack: Stack,
) -> None:
    await active(stack, example("order-create.json"))
    [license_] = stack.registry.list_licenses(CONTOSO)
    handle = stack.env.client.get_workflow_handle_for(
        SubscriptionWorkflow.run, f"subscription-{license_.subscription_id}"
    )
    await stack.first_task_done(handle)
    await handle.terminate("ops terminated it by mistake")

    report = await adopt(stack, CONTOSO)

    [taken] = report.adopted
    assert (taken.subscription_id, taken.seats, taken.price_source) == (
        license_.subscription_id,
        10,
        "as recorded",
    )
    details = await handle.query(SubscriptionWorkflow.details)
    assert details.status is LicenseStatus.ACTIVE and details.seats == 10
