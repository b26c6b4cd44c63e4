"""Contract tests: what the Partner Center client sends matches the documented shapes
(../shared/reference/provider.md; asserted on what the sandbox received), and the sandbox
refuses what Partner Center refuses: a two-part SKU, a stale availability (400019), a missing
Microsoft Customer Agreement (13605), an invalid address, a PATCH without or with a stale
ETag, a call without MS-Contract-Version."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from csp_core.providers.partner_center import PartnerCenterClient, customers
from csp_core.providers.port import CustomerAddress, OrderLine, ProviderError
from sandbox.server import serve_in_background
from sandbox.state import NORTHWIND_LEGACY_SUBSCRIPTION, NORTHWIND_TENANT
from tests.test_provider_sandbox import LINES, new_customer

TOKEN = "contract-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "MS-Contract-Version": "v1"}
MCA_TEMPLATE = "117a77b0-9360-443b-8795-c6dedc750cf9"


def rid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve_in_background(port=0, token=TOKEN) as url:
        yield url


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_url, timeout=10) as control:
        control.post("/sandbox/reset").raise_for_status()
        yield control


@pytest.fixture
async def client(sandbox: httpx.Client) -> AsyncIterator[PartnerCenterClient]:
    async with PartnerCenterClient(str(sandbox.base_url), SecretStr(TOKEN), timeout=5) as pc:
        yield pc


def received(sandbox: httpx.Client, method: str | None = None, suffix: str = "") -> list[Any]:
    seen = sandbox.get("/sandbox/requests", params={"face": "partner_center"}).json()
    return [
        r for r in seen if (method is None or r["method"] == method) and r["path"].endswith(suffix)
    ]


def post(sandbox: httpx.Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    return sandbox.post(path, json=body, headers=headers).raise_for_status().json()


def stats(sandbox: httpx.Client) -> dict[str, Any]:
    return sandbox.get("/sandbox/stats").raise_for_status().json()


async def test_a_new_customer_and_its_first_order_in_the_documented_shapes(
    client: PartnerCenterClient, sandbox: httpx.Client
) -> None:
    customer = new_customer()
    created = await client.create_customer(customer, request_id=rid())
    order_rid = rid()
    placed = await client.place_order(
        created.tenant_id, LINES, request_id=order_rid, new_tenant=customer
    )
    assert placed.status == "completed" and len(placed.subscriptions) == 2

    (validation,) = received(sandbox, "POST", "/v1/validations/address")
    assert validation["body"] == {
        "addressLine1": "Av. Insurgentes Sur 1602",
        "addressLine2": "Piso 4",
        "city": "Ciudad de México",
        "state": "CMX",  # the ISO 3166-2:MX code of "CDMX"
        "postalCode": "03940",
        "country": "MX",
    }
    (creation,) = received(sandbox, "POST", "/v1/customers")
    assert creation["body"]["billingProfile"]["defaultAddress"]["state"] == "CMX"
    assert creation["body"]["companyProfile"] == {"domain": "contosomx2024.onmicrosoft.com"}

    # The MCA before the first order: the client's contact, accepted now, the MCA template.
    (agreement,) = received(sandbox, "POST", "/agreements")
    assert agreement["body"]["primaryContact"] == {
        "firstName": "Ana",
        "lastName": "García",
        "email": "ana.garcia@contoso.example.mx",
    }
    assert agreement["body"]["type"] == "MicrosoftCustomerAgreement"
    assert agreement["body"]["templateId"] == MCA_TEMPLATE
    assert agreement["body"]["dateAgreed"].endswith("Z")

    # The availability of each PRODUCT:SKU line, then one cart with three-part ids.
    looked_up = [r["path"] for r in received(sandbox, "GET", "/availabilities")]
    assert looked_up == [
        f"/v1/customers/{created.tenant_id}/products/CFQ7TTC0LH18/skus/0001/availabilities",
        f"/v1/customers/{created.tenant_id}/products/CFQ7TTC0LDPB/skus/0001/availabilities",
    ]
    (cart,) = received(sandbox, "POST", "/carts")
    assert cart["path"] == f"/v1/customers/{created.tenant_id}/carts"
    assert cart["body"] == {
        "PartnerOnRecordAttestationAccepted": True,
        "lineItems": [
            {
                "id": 0,
                "catalogItemId": "CFQ7TTC0LH18:0001:CFQ7TTC0K971",
                "quantity": 5,
                "billingCycle": "monthly",
                "termDuration": "P1Y",
                "friendlyName": "Microsoft 365 Business Basic",
            },
            {
                "id": 1,
                "catalogItemId": "CFQ7TTC0LDPB:0001:CFQ7TTC0K2DB",
                "quantity": 2,
                "billingCycle": "monthly",
                "termDuration": "P1M",
            },
        ],
    }
    (checkout,) = received(sandbox, "POST", "/checkout")
    assert checkout["body"] is None
    assert received(sandbox, "POST", "/orders") == []  # never the legacy order API

    everything = received(sandbox)
    for request in everything:
        headers = request["headers"]
        assert headers["ms-contract-version"] == "v1"
        assert headers["authorization"] == "Bearer"
        uuid.UUID(headers["ms-correlationid"])
        if request["method"] in ("POST", "PATCH"):
            uuid.UUID(headers["ms-requestid"])
    correlations = [r["headers"]["ms-correlationid"] for r in everything]
    assert len(set(correlations)) == len(correlations)  # a new one per call
    writes = [r["headers"]["ms-requestid"] for r in everything if r["method"] == "POST"]
    assert len(set(writes)) == len(writes)  # each step of a request has its own id
    assert stats(sandbox)["agreements_confirmed"] == 1


async def test_a_retried_order_sends_the_same_request_ids_and_buys_once(
    client: PartnerCenterClient, sandbox: httpx.Client
) -> None:
    order_rid = rid()
    first = await client.place_order(NORTHWIND_TENANT, LINES, request_id=order_rid)
    again = await client.place_order(NORTHWIND_TENANT, LINES, request_id=order_rid)

    assert again.order_id == first.order_id
    carts = [r["headers"]["ms-requestid"] for r in received(sandbox, "POST", "/carts")]
    checkouts = [r["headers"]["ms-requestid"] for r in received(sandbox, "POST", "/checkout")]
    assert len(carts) == len(checkouts) == 2
    assert len(set(carts)) == len(set(checkouts)) == 1
    assert stats(sandbox)["orders_created"] == 1


async def test_a_stale_availability_is_looked_up_again_and_bought_once(
    client: PartnerCenterClient, sandbox: httpx.Client
) -> None:
    stale = "CFQ7TTC0LH18:0001:CFQ7TTC0K971"
    current = post(sandbox, "/sandbox/catalog/rotate", {"catalog_item_id": stale})
    line = LINES[0].model_copy(update={"offer_id": stale})

    placed = await client.place_order(NORTHWIND_TENANT, [line], request_id=rid())

    (subscription,) = placed.subscriptions
    assert subscription.offer_id in current["catalogItemIds"] and subscription.offer_id != stale
    carts = [
        r["body"]["lineItems"][0]["catalogItemId"] for r in received(sandbox, "POST", "/carts")
    ]
    assert carts == [stale, subscription.offer_id]
    assert stats(sandbox)["orders_created"] == 1


async def test_a_missing_agreement_is_confirmed_with_the_billing_contact_and_bought(
    client: PartnerCenterClient, sandbox: httpx.Client
) -> None:
    tenant = post(
        sandbox,
        "/sandbox/customers",
        {
            "domain": "clientepropio.onmicrosoft.com",
            "relationship": "reseller",
            "mca_accepted": False,
            "contact_first_name": "Marta",
            "contact_last_name": "Ruiz",
            "contact_email": "marta@clientepropio.example.mx",
        },
    )["id"]

    placed = await client.place_order(tenant, LINES[:1], request_id=rid())

    assert len(placed.subscriptions) == 1
    (agreement,) = received(sandbox, "POST", "/agreements")
    assert agreement["body"]["primaryContact"]["email"] == "marta@clientepropio.example.mx"
    assert len(received(sandbox, "POST", "/checkout")) == 2  # 13605, then bought
    counts = stats(sandbox)
    assert (counts["agreements_confirmed"], counts["orders_created"]) == (1, 1)


async def test_no_agreement_and_no_contact_is_a_refusal_that_says_what_to_do(
    client: PartnerCenterClient, sandbox: httpx.Client
) -> None:
    tenant = post(
        sandbox,
        "/sandbox/customers",
        {
            "domain": "sincontacto.onmicrosoft.com",
            "relationship": "reseller",
            "mca_accepted": False,
        },
    )["id"]

    with pytest.raises(ProviderError) as refused:
        await client.place_order(tenant, LINES[:1], request_id=rid())

    assert (refused.value.code, refused.value.status) == ("13605", 403)
    assert refused.value.transient is False
    assert "admin center" in str(refused.value)
    assert stats(sandbox)["orders_created"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"postal_code": "00000"}, "postal_code"), ({"state": "Texas"}, "state")],
)
async def test_a_refused_address_names_the_field_and_creates_nothing(
    client: PartnerCenterClient, sandbox: httpx.Client, change: dict[str, str], field: str
) -> None:
    customer = new_customer()
    address = CustomerAddress(**{**customer.address.model_dump(), **change})
    customer = customer.model_copy(update={"address": address})

    with pytest.raises(ProviderError) as refused:
        await client.create_customer(customer, request_id=rid())

    assert refused.value.code == "ADDRESS_REFUSED" and refused.value.transient is False
    assert f"check {field}" in str(refused.value)
    assert received(sandbox, "POST", "/v1/customers") == []
    assert stats(sandbox)["customers_created"] == 0


async def test_a_stale_etag_is_read_again_and_the_change_applied_once(
    sandbox: httpx.Client,
) -> None:
    path = f"/v1/customers/{NORTHWIND_TENANT}/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}"

    def meanwhile(path: str, etag: str) -> None:
        sandbox.patch(
            path,
            json={"autoRenewEnabled": False},
            headers={**HEADERS, "MS-RequestId": rid(), "If-Match": etag},
        ).raise_for_status()

    class ChangedMeanwhile(httpx.AsyncBaseTransport):
        """After the client's first read, someone else turns auto-renew off."""

        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()
            self.done = False

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if request.method == "GET" and request.url.path == path and not self.done:
                self.done = True
                await response.aread()
                etag = response.json()["attributes"]["etag"]
                meanwhile(path, etag)
            return response

    async with PartnerCenterClient(
        str(sandbox.base_url), SecretStr(TOKEN), timeout=5, transport=ChangedMeanwhile()
    ) as pc:
        changed = await pc.change_quantity(
            NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, 9, request_id=rid()
        )

    assert changed.quantity == 9 and changed.auto_renew_enabled is False  # both changes kept
    patches = [r for r in received(sandbox, "PATCH") if r["headers"].get("ms-requestid")]
    ours = patches[1:]  # after the concurrent change
    assert len(ours) == 2
    assert ours[0]["headers"]["if-match"] != ours[1]["headers"]["if-match"]
    assert ours[0]["headers"]["ms-requestid"] != ours[1]["headers"]["ms-requestid"]
    counts = stats(sandbox)
    assert (counts["quantity_changes"], counts["auto_renew_changes"]) == (1, 1)


def test_a_patch_needs_the_current_etag(sandbox: httpx.Client) -> None:
    path = f"/v1/customers/{NORTHWIND_TENANT}/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}"
    etag = sandbox.get(path, headers=HEADERS).json()["attributes"]["etag"]
    body = {"autoRenewEnabled": False}

    missing = sandbox.patch(path, json=body, headers={**HEADERS, "MS-RequestId": rid()})
    assert missing.status_code == 428
    applied = sandbox.patch(
        path, json=body, headers={**HEADERS, "MS-RequestId": rid(), "If-Match": etag}
    )
    assert applied.status_code == 200 and applied.json()["attributes"]["etag"] != etag
    stale = sandbox.patch(
        path,
        json={"autoRenewEnabled": True},
        headers={**HEADERS, "MS-RequestId": rid(), "If-Match": etag},
    )
    assert (stale.status_code, stale.json()["code"]) == (412, "2055")


def test_partner_center_refuses_what_the_client_must_not_send(sandbox: httpx.Client) -> None:
    no_version = sandbox.get(
        f"/v1/customers/{NORTHWIND_TENANT}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert no_version.status_code == 400 and "MS-Contract-Version" in no_version.text

    # A PRODUCT:SKU without its availability is no catalog item: not in a cart...
    line = {"id": 0, "catalogItemId": "CFQ7TTC0LH18:0001", "quantity": 1,
            "billingCycle": "monthly", "termDuration": "P1M"}  # fmt: skip
    cart = sandbox.post(
        f"/v1/customers/{NORTHWIND_TENANT}/carts",
        json={"PartnerOnRecordAttestationAccepted": True, "lineItems": [line]},
        headers={**HEADERS, "MS-RequestId": rid()},
    ).json()
    assert cart["lineItems"][0]["error"]["errorCode"] == "CatalogItemIdIsNotValid"
    refused = sandbox.post(
        f"/v1/customers/{NORTHWIND_TENANT}/carts/{cart['id']}/checkout",
        headers={**HEADERS, "MS-RequestId": rid()},
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "800009")
    # ...nor in the legacy order API.
    legacy = sandbox.post(
        f"/v1/customers/{NORTHWIND_TENANT}/orders",
        json={"lineItems": [{"lineItemNumber": 0, "offerId": "CFQ7TTC0LH18:0001",
                             "quantity": 1, "termDuration": "P1M",
                             "billingCycle": "monthly"}]},
        headers={**HEADERS, "MS-RequestId": rid()},
    )  # fmt: skip
    assert (legacy.status_code, legacy.json()["code"]) == (400, "800004")
    assert stats(sandbox)["orders_created"] == 0


def test_a_cart_without_the_attestation_is_refused(sandbox: httpx.Client) -> None:
    line = {"id": 0, "catalogItemId": "CFQ7TTC0LH18:0001:CFQ7TTC0K971", "quantity": 1,
            "billingCycle": "monthly", "termDuration": "P1M"}  # fmt: skip
    cart = sandbox.post(
        f"/v1/customers/{NORTHWIND_TENANT}/carts",
        json={"lineItems": [line]},
        headers={**HEADERS, "MS-RequestId": rid()},
    ).json()
    assert cart["lineItems"][0]["error"]["errorCode"] == "AttestationNotAccepted"


async def test_a_term_the_sku_does_not_offer_is_a_refusal(client: PartnerCenterClient) -> None:
    three_years = OrderLine(
        line_number=0,
        offer_id="CFQ7TTC0LDPB:0001",
        quantity=1,
        term_duration="P3Y",
        billing_cycle="annual",
    )
    with pytest.raises(ProviderError) as refused:
        await client.place_order(NORTHWIND_TENANT, [three_years], request_id=rid())
    assert refused.value.code == "NO_AVAILABILITY" and refused.value.transient is False


async def test_the_relationship_link_is_asked_once_an_hour_not_per_invitation(
    client: PartnerCenterClient, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await client.relationship_request_link()
    assert await client.relationship_request_link() == first
    assert len(received(sandbox, "GET", "/relationshiprequests")) == 1

    monkeypatch.setattr(customers, "RELATIONSHIP_LINK_TTL_S", 0.0)  # each look-up expires at once
    async with PartnerCenterClient(str(sandbox.base_url), SecretStr(TOKEN), timeout=5) as pc:
        assert await pc.relationship_request_link() == first
        assert await pc.relationship_request_link() == first
    assert len(received(sandbox, "GET", "/relationshiprequests")) == 3


async def test_the_relationship_link_expires_at_its_hour_not_a_moment_before(
    sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache's edge on the adapter's own clock: kept one second before the hour, asked
    again at the hour."""
    clock = [1_000.0]
    monkeypatch.setattr(customers, "monotonic", lambda: clock[0])
    before = len(received(sandbox, "GET", "/relationshiprequests"))
    async with PartnerCenterClient(str(sandbox.base_url), SecretStr(TOKEN), timeout=5) as pc:
        await pc.relationship_request_link()
        clock[0] += customers.RELATIONSHIP_LINK_TTL_S - 1
        await pc.relationship_request_link()
        assert len(received(sandbox, "GET", "/relationshiprequests")) == before + 1

        clock[0] += 1
        await pc.relationship_request_link()
        assert len(received(sandbox, "GET", "/relationshiprequests")) == before + 2
