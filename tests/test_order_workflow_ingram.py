"""The order path through the workflows with the Ingram Xvantage adapter, against the
sandbox's Xvantage face: create a tenant, link to a tenant already ours, link after the
client's acceptance. Ingram's effects are counted under /sandbox/stats by_face.xvantage."""

from __future__ import annotations

from datetime import timedelta

import pytest

from csp_core.stages import OrderStage
from tests.support import ingram as on_ingram
from tests.support.ingram import xvantage
from tests.support.stack import Stack, example
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

ingram = on_ingram.ingram  # the fixture: the stack on the Ingram adapter


def partner_center(stack: Stack) -> dict[str, int]:
    return stack.stats()["by_face"]["partner_center"]


async def test_create_mode_creates_the_tenant_with_the_first_ingram_order(ingram: Stack) -> None:
    order = example("order-create.json")

    result = await ingram.result(await ingram.submit(order))

    assert result.stage is OrderStage.ACTIVE
    counted = xvantage(ingram)
    assert (counted["customers_created"], counted["orders_created"]) == (1, 1)
    assert set(partner_center(ingram).values()) == {0}
    licenses = ingram.registry.list_licenses("contosomx.onmicrosoft.com")
    assert [(lic.sku, lic.quantity, lic.status) for lic in licenses] == [
        ("CFQ7TTC0LH18:0001", 10, "active")
    ]
    # Ingram hands the admin credentials to the client: there is nothing for us to reveal.
    assert ingram.mail_kinds(order.order_id) == ["order_active"]
    assert "credentials reveal" not in ingram.mails(order.order_id)[0].get_content()
    world = ingram.sandbox.get("/sandbox/xvantage").json()
    [request] = world["requests"]
    assert request["preference"] == "new"
    assert request["fields"]["mca_acceptance"] == "yes"
    assert request["fields"]["email_address_agreement"] == "ana.lopez@contoso.mx"
    assert request["fields"]["effective_state"] == "CMX"


async def test_a_second_order_uses_the_tenant_the_first_one_created(ingram: Stack) -> None:
    await ingram.result(await ingram.submit(example("order-create.json")))
    again = example("order-create.json")

    result = await ingram.result(await ingram.submit(again))

    assert result.stage is OrderStage.ACTIVE
    assert xvantage(ingram)["customers_created"] == 1
    assert xvantage(ingram)["orders_created"] == 2
    preferences = [
        r["preference"] for r in ingram.sandbox.get("/sandbox/xvantage").json()["requests"]
    ]
    assert preferences == ["new", "existing"]
    assert len(ingram.registry.list_licenses("contosomx.onmicrosoft.com")) == 2


async def test_link_to_a_tenant_already_ours_orders_at_once(ingram: Stack) -> None:
    order = example("order-link-ours.json")

    result = await ingram.result(await ingram.submit(order))

    assert result.stage is OrderStage.ACTIVE
    assert ingram.mail_kinds(order.order_id) == ["order_active"]
    assert xvantage(ingram)["customers_created"] == 0
    assert xvantage(ingram)["orders_created"] == 1
    licenses = ingram.registry.list_licenses("northwind.onmicrosoft.com")
    assert sorted(lic.quantity for lic in licenses) == [5, 25]


async def test_link_after_acceptance_orders_on_the_existing_tenant(ingram: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await ingram.submit(order)
    await ingram.env.sleep(timedelta(days=1))

    waiting = await handle.query(LicenseOrderWorkflow.status)
    assert waiting.stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE
    invitation = ingram.mails(order.order_id)[0].get_content()
    # The indirect-reseller invitation: the client accepts us and Ingram at once.
    assert "type=IndirectResellerRelationship" in invitation
    assert "indirectCSP=00000000-0000-0000-0000-0000000019a0" in invitation
    assert xvantage(ingram)["orders_created"] == 0

    await handle.signal(LicenseOrderWorkflow.partner_accepted)
    result = await ingram.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert ingram.mail_kinds(order.order_id) == ["partner_invitation", "order_active"]
    assert [lic.quantity for lic in ingram.registry.list_licenses("fabrikam.onmicrosoft.com")] == [
        40
    ]
    [request] = ingram.sandbox.get("/sandbox/xvantage").json()["requests"]
    assert (request["preference"], request["fields"]["relationship_url"]) == ("existing", "yes")


async def test_a_taken_domain_fails_the_order_as_ingram_refuses_it(ingram: Stack) -> None:
    order = example("order-create.json", tenant={"mode": "create", "domain_prefix": "contoso"})

    result = await ingram.result(await ingram.submit(order))

    assert result.stage is OrderStage.FAILED
    assert "OrderRejected" in result.detail
    assert xvantage(ingram)["orders_created"] == 0
