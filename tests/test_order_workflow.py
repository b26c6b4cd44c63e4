"""LicenseOrderWorkflow on the time-skipping test server, with the real activities talking to
the Partner Center sandbox over HTTP, an SMTP sink and a SQLite registry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle

from api import orders as order_api
from csp_core.orders.models import Order
from csp_core.orders.provisioning import OrderStatus
from csp_core.stages import OrderStage
from temporalutil import search_attributes as sa
from tests.support.stack import Stack, example
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


async def submit(stack: Stack, order: Order) -> WorkflowHandle:
    return await stack.submit(order)


async def status(handle: WorkflowHandle) -> OrderStatus:
    return await handle.query(LicenseOrderWorkflow.status)


async def stage_attribute(handle: WorkflowHandle) -> str | None:
    return (await handle.describe()).typed_search_attributes.get(sa.ORDER_STAGE)


async def test_create_mode_creates_tenant_orders_and_activates(stack: Stack) -> None:
    order = example("order-create.json")
    handle = await submit(stack, order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert await stage_attribute(handle) == "ACTIVE"
    stats = stack.stats()
    assert (stats["customers_created"], stats["orders_created"]) == (1, 1)
    licenses = stack.registry.list_licenses("contosomx.onmicrosoft.com")
    assert [(lic.sku, lic.quantity, lic.status) for lic in licenses] == [
        ("CFQ7TTC0LH18:0001", 10, "active")
    ]
    assert stack.mail_kinds(order.order_id) == ["order_active"]
    assert "credentials reveal" in stack.mails(order.order_id)[0].get_content()


async def test_admin_password_stays_out_of_history_mail_and_plain_storage(stack: Stack) -> None:
    order = example("order-create.json")
    handle = await submit(stack, order)
    await stack.result(handle)

    username, password = stack.registry.reveal_credentials(order.order_id, stack.vault)
    secret = password.get_secret_value()
    assert username == "admin@contosomx.onmicrosoft.com" and len(secret) >= 8

    history = (await handle.fetch_history()).to_json()
    assert secret not in history
    assert all(secret not in m.as_string() for m in stack.mails())
    db_file = stack.registry_path.read_bytes()
    assert secret.encode() not in db_file


async def test_link_to_a_tenant_already_ours_needs_no_invitation(stack: Stack) -> None:
    order = example("order-link-ours.json")
    handle = await submit(stack, order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert stack.mail_kinds(order.order_id) == ["order_active"]
    assert stack.stats()["customers_created"] == 0
    licenses = stack.registry.list_licenses("northwind.onmicrosoft.com")
    assert sorted(lic.quantity for lic in licenses) == [5, 25]


async def test_second_order_reuses_the_tenant_and_accumulates_licenses(stack: Stack) -> None:
    first = example("order-create.json")
    await stack.result(await submit(stack, first))
    second = example(
        "order-create.json",
        items=[
            {"sku": "CFQ7TTC0LDPB:0001", "product_name": "Microsoft 365 Business Standard",
             "quantity": 3, "term": "P1M", "billing_cycle": "monthly", "unit_price": "260.00"}
        ],
    )  # fmt: skip

    result = await stack.result(await submit(stack, second))

    assert result.stage is OrderStage.ACTIVE
    assert stack.stats()["customers_created"] == 1  # the tenant was not created twice
    assert stack.stats()["orders_created"] == 2
    domains = {lic.domain for lic in stack.registry.list_licenses()}
    assert domains == {"contosomx.onmicrosoft.com"}
    assert len(stack.registry.list_licenses("contosomx.onmicrosoft.com")) == 2


async def test_link_waits_for_acceptance_and_the_signal_activates(stack: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await submit(stack, order)
    await stack.env.sleep(DAY)

    waiting = await status(handle)
    assert waiting.stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE
    assert await stage_attribute(handle) == "AWAITING_PARTNER_ACCEPTANCE"
    assert stack.mail_kinds(order.order_id) == ["partner_invitation"]
    invitation = stack.mails(order.order_id)[0].get_content()
    assert "invType=ResellerRelationship" in invitation
    assert stack.stats()["orders_created"] == 0

    await handle.signal(LicenseOrderWorkflow.partner_accepted)
    result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert stack.mail_kinds(order.order_id) == ["partner_invitation", "order_active"]
    assert [lic.quantity for lic in stack.registry.list_licenses("fabrikam.onmicrosoft.com")] == [
        40
    ]


async def test_acceptance_seen_by_polling_the_provider_at_the_next_poll(stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(update={"acceptance_poll_minutes": 60})
    order = example("order-link-invite.json")
    handle = await submit(stack, order)
    await stack.env.sleep(timedelta(hours=30, minutes=30))
    stack.sandbox.post("/sandbox/customers/fabrikam.onmicrosoft.com/accept").raise_for_status()

    # Polls run hourly (the production default) from the start of the wait: next at +31 h.
    await stack.env.sleep(timedelta(minutes=25))
    assert (await status(handle)).stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE

    result = await stack.result(handle)
    assert result.stage is OrderStage.ACTIVE
    activated_at = (await handle.describe()).close_time
    assert activated_at is not None and result.waiting_since is not None
    elapsed = activated_at - result.waiting_since
    assert timedelta(hours=31) <= elapsed < timedelta(hours=31, minutes=5)


async def test_reminders_fire_at_two_five_and_ten_days(stack: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await submit(stack, order)

    async def reminders_at(offset: timedelta) -> int:
        start = (await status(handle)).waiting_since
        assert start is not None
        now = await stack.env.get_current_time()
        await stack.env.sleep(start + offset - now)
        current = await status(handle)
        described = (await handle.describe()).typed_search_attributes.get(sa.REMINDER_COUNT)
        assert described == current.reminders_sent
        return current.reminders_sent

    await stack.env.sleep(MINUTE)
    assert await reminders_at(2 * DAY - MINUTE) == 0
    assert await reminders_at(2 * DAY + MINUTE) == 1
    assert await reminders_at(5 * DAY - MINUTE) == 1
    assert await reminders_at(5 * DAY + MINUTE) == 2
    assert await reminders_at(10 * DAY - MINUTE) == 2
    assert await reminders_at(10 * DAY + MINUTE) == 3
    assert await reminders_at(29 * DAY) == 3
    assert stack.mail_kinds(order.order_id) == ["partner_invitation"] + ["acceptance_reminder"] * 3

    await handle.signal(LicenseOrderWorkflow.cancel_order, "test over")
    assert (await stack.result(handle)).stage is OrderStage.CANCELLED


async def test_unaccepted_invitation_expires_after_30_days_and_orders_nothing(
    stack: Stack,
) -> None:
    order = example("order-link-invite.json")
    handle = await submit(stack, order)

    result = await stack.result(handle)

    assert result.stage is OrderStage.EXPIRED
    assert result.acceptance_deadline is not None and result.waiting_since is not None
    assert result.acceptance_deadline - result.waiting_since == timedelta(days=30)
    expired_at = (await handle.describe()).close_time
    assert expired_at is not None
    assert result.acceptance_deadline <= expired_at < result.acceptance_deadline + MINUTE
    assert await stage_attribute(handle) == "EXPIRED"
    assert stack.stats()["orders_created"] == 0
    assert stack.mail_kinds(order.order_id) == (
        ["partner_invitation"] + ["acceptance_reminder"] * 3 + ["acceptance_expired"]
    )
    assert stack.registry.get_order(order.order_id).stage == "EXPIRED"


async def test_cancel_while_waiting_cancels_and_orders_nothing(stack: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await submit(stack, order)
    await stack.env.sleep(3 * DAY)

    await order_api.cancel_order(stack.env.client, order.order_id, "el cliente desistió")
    result = await stack.result(handle)

    assert result.stage is OrderStage.CANCELLED
    assert result.cancel_reason == "el cliente desistió"
    assert stack.stats()["orders_created"] == 0
    assert stack.mail_kinds(order.order_id)[-1] == "order_cancelled"


async def test_cancel_after_the_order_is_placed_is_refused(stack: Stack) -> None:
    order = example("order-link-ours.json")
    handle = await submit(stack, order)
    await stack.result(handle)

    with pytest.raises(order_api.OrderRefused, match="168 h"):
        await order_api.cancel_order(stack.env.client, order.order_id, "too late")


async def test_cancel_and_acceptance_are_refused_at_once_while_the_order_is_placed(
    stack: Stack,
) -> None:
    # The provider's reads keep answering 503: the order stays in PLACING_ORDER or ACTIVATING.
    stack.sandbox.post(
        "/sandbox/faults",
        json={"method": "GET", "path_prefix": "/v1/customers/", "status": 503, "times": 40},
    ).raise_for_status()
    order = example("order-link-ours.json")
    handle = await submit(stack, order)
    placed = (OrderStage.PLACING_ORDER, OrderStage.ACTIVATING)
    for _ in range(200):
        if (await status(handle)).stage in placed:
            break
        await asyncio.sleep(0.05)
    assert (await status(handle)).stage in placed

    with pytest.raises(order_api.OrderRefused, match=r"(PLACING_ORDER|ACTIVATING).*168 h of the"):
        await order_api.cancel_order(stack.env.client, order.order_id, "demasiado tarde")
    with pytest.raises(order_api.OrderRefused, match="not waiting for the client's partner"):
        await order_api.accept_partner(stack.env.client, order.order_id)

    result = await stack.result(handle)  # the refused commands changed nothing
    assert result.stage is OrderStage.ACTIVE and result.cancel_reason is None
    history = (await handle.fetch_history()).to_json()
    assert "demasiado tarde" not in history  # a refused update leaves no trace in history


async def test_partner_acceptance_by_update_activates_the_waiting_order(stack: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await submit(stack, order)
    await stack.env.sleep(DAY)

    answer = await order_api.accept_partner(stack.env.client, order.order_id, "por teléfono")
    assert answer.stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE

    assert (await stack.result(handle)).stage is OrderStage.ACTIVE
    with pytest.raises(order_api.OrderRefused, match="already ACTIVE: nothing left to accept"):
        await order_api.accept_partner(stack.env.client, order.order_id)


async def test_duplicate_submit_returns_the_same_workflow_and_orders_once(stack: Stack) -> None:
    order = example("order-link-ours.json")
    first = await order_api.submit_order(stack.env.client, stack.registry, order, stack.settings)
    stack.started.append(first.workflow_id)
    again = await order_api.submit_order(stack.env.client, stack.registry, order, stack.settings)
    assert (again.workflow_id, again.run_id, again.created) == (
        first.workflow_id,
        first.run_id,
        False,
    )
    await stack.result(stack.env.client.get_workflow_handle(first.workflow_id))

    after_completion = await order_api.submit_order(
        stack.env.client, stack.registry, order, stack.settings
    )
    assert after_completion.created is False
    assert after_completion.already_processed  # the registry answers: ACTIVE
    assert stack.stats()["orders_created"] == 1

    changed = order.model_copy(update={"items": order.items[:1]})
    with pytest.raises(order_api.OrderRefused, match="different content"):
        await order_api.submit_order(stack.env.client, stack.registry, changed, stack.settings)


async def test_throttled_provider_is_retried_after_retry_after(stack: Stack) -> None:
    stack.sandbox.post(
        "/sandbox/faults",
        json={"method": "POST", "path_prefix": "/v1/customers", "status": 429,
              "retry_after": 1, "times": 2},
    ).raise_for_status()  # fmt: skip
    order = example("order-create.json")

    result = await stack.result(await submit(stack, order))

    assert result.stage is OrderStage.ACTIVE
    stats = stack.stats()
    assert stats["faults_served"] == 2
    assert (stats["customers_created"], stats["orders_created"]) == (1, 1)


async def test_taken_domain_fails_the_order_with_the_reason(stack: Stack) -> None:
    order = example("order-create.json", tenant={"mode": "create", "domain_prefix": "fabrikam"})

    result = await stack.result(await submit(stack, order))

    assert result.stage is OrderStage.FAILED
    assert "fabrikam.onmicrosoft.com is already taken" in result.detail
    assert stack.stats()["customers_created"] == 0
    failed = stack.mails(order.order_id)
    assert [str(m["X-CSP-Kind"]) for m in failed] == ["order_failed"]
    text = failed[0].get_content()
    # The reason in Spanish, with the next step that fits it (a new order), never its opposite.
    assert "fabrikam.onmicrosoft.com" in text and "envíe un pedido nuevo" in text
    assert "no vuelva a enviar" not in text.lower()
    assert "already taken" not in text and "choose" not in text


async def test_an_acceptance_the_provider_never_shows_fails_the_order_after_a_day(
    stack: Stack,
) -> None:
    """Ops confirmed an acceptance for a tenant the provider does not know: placing waits a
    day for the provider to show it (eventual consistency), then the order fails for ops."""
    order = example(
        "order-link-invite.json", tenant={"mode": "link", "domain": "nadie.onmicrosoft.com"}
    )
    handle = await submit(stack, order)
    await stack.env.sleep(MINUTE)
    assert (await status(handle)).stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE

    await order_api.accept_partner(stack.env.client, order.order_id, "por teléfono")
    await stack.env.sleep(DAY - 2 * MINUTE)
    assert (await status(handle)).stage is OrderStage.PLACING_ORDER

    result = await stack.result(handle)
    assert result.stage is OrderStage.FAILED
    assert "does not show at the provider" in result.detail
    assert stack.stats()["orders_created"] == 0
    assert stack.mail_kinds(order.order_id) == ["partner_invitation", "order_failed"]
