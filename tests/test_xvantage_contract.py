"""Contract tests of the Ingram Xvantage adapter and the sandbox's Xvantage face: every request
the adapter sends and every answer the face gives parses as the xi-sdk-resellers models; the
token is renewed before expiry and on a 401 mid-run; errors map to retry or stop."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio
from xi.sdk.resellers.models import (
    AccesstokenResponse,
    ErrorResponse,
    OrderCreateV7Request,
    OrderCreateV7Response201,
    OrderDetailB2B,
    OrderSearchResponse,
    VendorRequiredInfoRequest,
    VendorRequiredInforesponseInner,
)

from csp_core.providers.port import (
    NOT_OFFERED_BY_PROVIDER,
    CustomerAddress,
    NewCustomer,
    OrderLine,
    ProviderError,
    ProviderNotOffered,
    SubscriptionStatus,
)
from csp_core.providers.xvantage import OrderInProgress, XvantageClient, correlation_id
from sandbox.server import serve_in_background
from tests.support.stack import xvantage_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTOSO = NewCustomer(
    domain="contosomx.onmicrosoft.com",
    company_name="Contoso México SA de CV",
    first_name="Ana",
    last_name="López",
    email="ana.lopez@contoso.mx",
    address=CustomerAddress(
        line1="Av. Insurgentes Sur 1234",
        city="Ciudad de México",
        state="CDMX",
        postal_code="03100",
        country="MX",
    ),
)
LINES = [
    OrderLine(
        line_number=0,
        offer_id="CFQ7TTC0LH18:0001",
        quantity=10,
        term_duration="P1Y",
        billing_cycle="monthly",
        friendly_name="Microsoft 365 Business Basic",
    )
]
# What each path's requests and answers must parse as (None: no body).
REQUEST_MODELS = {
    "/resellers/v7/vendorrequiredinfo": VendorRequiredInfoRequest,
    "/resellers/v7/orders": OrderCreateV7Request,
}


def _answer_ok(path: str, body: object) -> None:
    if path == "/oauth/oauth20/token":
        AccesstokenResponse.model_validate(body)
    elif path == "/resellers/v7/vendorrequiredinfo":
        assert isinstance(body, list) and body
        for item in body:
            VendorRequiredInforesponseInner.model_validate(item)
    elif path == "/resellers/v7/orders":
        OrderCreateV7Response201.model_validate(body)
    elif path == "/resellers/v6/orders/search":
        OrderSearchResponse.model_validate(body)
    elif path.startswith("/resellers/v6.1/orders/"):
        OrderDetailB2B.model_validate(body)
    else:
        raise AssertionError(f"unexpected path {path}")


class Recorder(httpx.AsyncBaseTransport):
    """The real transport, keeping every request and answer for the test to check."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[httpx.Request, httpx.Response, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.calls.append((request, response, body))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    def paths(self) -> list[str]:
        return [request.url.path for request, _, _ in self.calls]


@pytest.fixture(scope="module")
def face_url() -> Iterator[str]:
    # Orders wait for /sandbox/xvantage/process-now: the asynchrony is visible, not timed.
    with serve_in_background(port=0, xvantage_order_delay_seconds=10_000) as url:
        yield url


@pytest.fixture
def control(face_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=face_url, timeout=10) as client:
        client.post("/sandbox/reset").raise_for_status()
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def recorded(
    face_url: str, control: httpx.Client
) -> AsyncIterator[tuple[XvantageClient, Recorder]]:
    recorder = Recorder()
    async with xvantage_client(face_url, transport=recorder) as client:
        yield client, recorder


async def place(client: XvantageClient, control, request_id: str, *, polls: int = 1):  # type: ignore[no-untyped-def]
    for _ in range(polls):  # submitted, not processed yet: the activity would retry
        with pytest.raises(OrderInProgress):
            await client.place_order(
                "contosomx.onmicrosoft.com", LINES, request_id=request_id, new_tenant=CONTOSO
            )
    control.post("/sandbox/xvantage/process-now").raise_for_status()
    return await client.place_order(
        "contosomx.onmicrosoft.com", LINES, request_id=request_id, new_tenant=CONTOSO
    )


async def test_every_request_and_answer_parses_as_the_sdk_models(recorded, control) -> None:
    client, recorder = recorded
    request_id = str(uuid.uuid4())

    placed = await place(client, control, request_id)
    sub = placed.subscriptions[0]
    await client.subscription_provisioning("contosomx.onmicrosoft.com", sub.subscription_id)
    await client.get_subscription("contosomx.onmicrosoft.com", sub.subscription_id)

    assert {"/oauth/oauth20/token", "/resellers/v7/vendorrequiredinfo", "/resellers/v7/orders",
            "/resellers/v6/orders/search"} <= set(recorder.paths())  # fmt: skip
    for request, response, body in recorder.calls:
        path = request.url.path
        assert response.is_success, (path, body)
        _answer_ok(path, json.loads(body))
        if path == "/oauth/oauth20/token":
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == ["client_credentials"]
            assert "client_secret" not in str(request.url)  # never in the URL
            continue
        headers = request.headers
        assert headers["IM-CustomerNumber"] == "20-222222"
        assert headers["IM-CountryCode"] == "MX"
        assert headers["IM-SenderID"] == "csp-orchestrator"
        assert 0 < len(headers["IM-CorrelationID"]) <= 32
        assert headers["Authorization"].startswith("Bearer ")
        if (model := REQUEST_MODELS.get(path)) is not None:
            model.model_validate(json.loads(request.content))


async def test_the_new_tenant_order_carries_the_nce_vendor_fields(recorded, control) -> None:
    client, recorder = recorded
    await place(client, control, str(uuid.uuid4()))

    [order] = [
        OrderCreateV7Request.model_validate(json.loads(request.content))
        for request, _, _ in recorder.calls
        if request.url.path == "/resellers/v7/orders"
    ][:1]
    fields = {a.attribute_name: a.attribute_value for a in order.vmf_additional_attributes or []}
    assert fields["tenant_preference"] == "new"
    assert fields["microsoft_domain"] == "contosomx"
    assert fields["mca_acceptance"] == "yes"
    assert (fields["first_name_agreement"], fields["last_name_agreement"]) == ("Ana", "López")
    assert fields["email_address_agreement"] == "ana.lopez@contoso.mx"
    assert fields["partner_on_record_attestation_accepted"] == "attestation_accepted"
    assert fields["tier1_mpn"] == "5068860"  # prefilled by vendorrequiredinfo, sent back
    assert order.end_user_info is not None and order.end_user_info.state == "CMX"


async def test_a_retry_is_recognisable_and_places_one_order(recorded, control) -> None:
    client, recorder = recorded
    request_id = str(uuid.uuid4())

    placed = await place(client, control, request_id, polls=2)
    again = await client.place_order(
        "contosomx.onmicrosoft.com", LINES, request_id=request_id, new_tenant=CONTOSO
    )

    assert again.order_id == placed.order_id
    posts = [r for r, _, _ in recorder.calls if r.url.path == "/resellers/v7/orders"]
    assert {r.headers["IM-CorrelationID"] for r in posts} == {correlation_id(request_id)}
    stats = control.get("/sandbox/stats").json()["by_face"]["xvantage"]
    assert (stats["orders_created"], stats["customers_created"]) == (1, 1)
    assert stats["requests_replayed"] >= 1


async def test_a_token_that_expires_mid_run_is_renewed(recorded, control) -> None:
    client, _ = recorded
    await client.find_customer_by_domain("northwind.onmicrosoft.com")
    control.post("/sandbox/xvantage/expire-tokens").raise_for_status()

    customer = await client.find_customer_by_domain("northwind.onmicrosoft.com")

    assert customer is not None and customer.has_reseller_relationship
    assert client.tokens_fetched == 2


async def test_bad_client_credentials_stop(face_url: str, control) -> None:
    async with XvantageClient(
        face_url,
        client_id="sandbox-client",
        client_secret=pytest.importorskip("pydantic").SecretStr("wrong"),
        customer_number="20-222222",
        partner_tenant_id="p",
        partner_mpn_id="1",
        ingram_tenant_id="i",
    ) as client:
        with pytest.raises(ProviderError) as refused:
            await client.find_customer_by_domain("northwind.onmicrosoft.com")
    assert refused.value.status == 401 and not refused.value.transient


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (400, False), (403, False)]
)
async def test_throttling_and_outages_retry_refusals_stop(
    recorded, control, status: int, transient: bool
) -> None:
    client, recorder = recorded
    fault = {"method": "GET", "path_prefix": "/resellers/v6/orders/search", "status": status}
    if status == 429:
        fault["retry_after"] = 3
    control.post("/sandbox/faults", json=fault).raise_for_status()

    with pytest.raises(ProviderError) as failed:
        await client.find_customer_by_domain("northwind.onmicrosoft.com")

    assert failed.value.transient is transient
    if status == 429:
        assert failed.value.retry_after_seconds == 3
    # The face answered in Ingram's error shape.
    _, response, body = recorder.calls[-1]
    assert response.status_code == status
    ErrorResponse.model_validate(json.loads(body))
    counted = control.get("/sandbox/stats").json()["by_face"]["xvantage"]
    assert counted["faults_served"] == 1


async def test_operations_xvantage_has_no_api_for_are_named_not_offered(recorded) -> None:
    client, _ = recorded
    tenant, sub = "contosomx.onmicrosoft.com", "sub-1"
    calls = {
        "suspend": client.set_subscription_status(
            tenant, sub, SubscriptionStatus.SUSPENDED, request_id="r"
        ),
        "reactivate": client.set_subscription_status(
            tenant, sub, SubscriptionStatus.ACTIVE, request_id="r"
        ),
        "change the seats": client.change_quantity(tenant, sub, 3, request_id="r"),
        "cancel": client.cancel_subscription(tenant, sub, request_id="r"),
        "turn auto-renew off": client.set_auto_renew(tenant, sub, False, request_id="r"),
    }
    for operation, call in calls.items():
        with pytest.raises(ProviderNotOffered) as refused:
            await call
        assert refused.value.code == NOT_OFFERED_BY_PROVIDER
        assert not refused.value.transient
        assert operation in str(refused.value) and "Ingram" in str(refused.value)


async def test_what_ops_change_in_ingrams_marketplace_shows_in_the_order_details(
    recorded, control
) -> None:
    """The operations XI has no API for are done by ops in Ingram's marketplace (the sandbox's
    control plays them); the adapter then reads the result in the order details."""
    client, recorder = recorded
    placed = await place(client, control, str(uuid.uuid4()))
    sub_id, tenant = placed.subscriptions[0].subscription_id, "contosomx.onmicrosoft.com"

    def marketplace(**change: object) -> None:
        url = f"/sandbox/xvantage/marketplace/subscriptions/{sub_id}"
        control.post(url, json=change).raise_for_status()

    marketplace(status="suspended")
    suspended = await client.get_subscription(tenant, sub_id)
    marketplace(status="active")  # auto-renew stays off, as suspending left it
    marketplace(quantity=12, autoRenewEnabled=True)
    changed = await client.get_subscription(tenant, sub_id)

    assert suspended.status is SubscriptionStatus.SUSPENDED and not suspended.auto_renew_enabled
    assert (changed.status, changed.quantity, changed.auto_renew_enabled) == (
        SubscriptionStatus.ACTIVE, 12, True
    )  # fmt: skip
    counted = control.get("/sandbox/stats").json()["by_face"]["xvantage"]
    assert (counted["subscriptions_suspended"], counted["subscriptions_reactivated"]) == (1, 1)
    assert (counted["quantity_changes"], counted["auto_renew_changes"]) == (1, 1)
    for request, _, body in recorder.calls:
        if request.url.path.startswith("/resellers/v6.1/orders/"):
            OrderDetailB2B.model_validate(json.loads(body))
    refused = control.post(
        "/sandbox/xvantage/marketplace/subscriptions/no-such-sub", json={"status": "suspended"}
    )
    assert refused.status_code == 404
