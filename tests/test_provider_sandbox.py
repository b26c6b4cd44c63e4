"""The real PartnerCenterClient against the real sandbox server, over real HTTP on free ports."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.port import (
    CustomerAddress,
    NewCustomer,
    OrderLine,
    ProviderError,
    ProvisioningState,
    SubscriptionStatus,
)
from sandbox.server import serve_in_background
from sandbox.state import FABRIKAM_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, NORTHWIND_TENANT

TOKEN = "sandbox-token"
NORTHWIND = "northwind.onmicrosoft.com"
FABRIKAM = "fabrikam.onmicrosoft.com"


def new_customer(domain: str = "contosomx2024.onmicrosoft.com") -> NewCustomer:
    return NewCustomer(
        domain=domain,
        company_name="Contoso México SA de CV",
        first_name="Ana",
        last_name="García",
        email="ana.garcia@contoso.example.mx",
        address=CustomerAddress(
            line1="Av. Insurgentes Sur 1602",
            line2="Piso 4",
            city="Ciudad de México",
            state="CDMX",
            postal_code="03940",
            country="MX",
        ),
    )


LINES = [
    OrderLine(
        line_number=0,
        offer_id="CFQ7TTC0LH18:0001",
        quantity=5,
        term_duration="P1Y",
        billing_cycle="monthly",
        friendly_name="Microsoft 365 Business Basic",
    ),
    OrderLine(
        line_number=1,
        offer_id="CFQ7TTC0LDPB:0001",
        quantity=2,
        term_duration="P1M",
        billing_cycle="monthly",
    ),
]


def rid() -> str:
    return str(uuid.uuid4())


def stats(base_url: str) -> dict[str, int]:
    return httpx.get(f"{base_url}/sandbox/stats").raise_for_status().json()


def control(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return httpx.post(f"{base_url}{path}", json=body).raise_for_status().json()


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    # Enforce the partner relationship like Partner Center does (the dev stack trusts ops).
    with serve_in_background(port=0, token=TOKEN, enforce_relationship=True) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[PartnerCenterClient]:
    control(sandbox_url, "/sandbox/reset")
    async with PartnerCenterClient(sandbox_url, SecretStr(TOKEN), timeout=5.0) as pc:
        yield pc


async def test_domain_availability(client: PartnerCenterClient) -> None:
    assert await client.domain_available(NORTHWIND) is False
    assert await client.domain_available(FABRIKAM) is False
    assert await client.domain_available("nuevocliente7.onmicrosoft.com") is True


async def test_create_customer_returns_credentials_and_is_idempotent(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    request_id = rid()
    created = await client.create_customer(new_customer(), request_id=request_id)
    assert created.domain == "contosomx2024.onmicrosoft.com"
    assert created.admin_username == "admin@contosomx2024.onmicrosoft.com"
    assert len(created.admin_password.get_secret_value()) >= 8
    assert await client.domain_available(created.domain) is False

    # A retry of the same logical request (same MS-RequestId) gets the same tenant and password.
    again = await client.create_customer(new_customer(), request_id=request_id)
    assert again.tenant_id == created.tenant_id
    assert again.admin_password.get_secret_value() == created.admin_password.get_secret_value()
    counts = stats(sandbox_url)
    assert counts["customers_created"] == 1
    assert counts["requests_replayed"] == 1

    # A different request for the now-taken domain is refused.
    with pytest.raises(ProviderError) as refused:
        await client.create_customer(new_customer(), request_id=rid())
    assert refused.value.status == 409
    assert refused.value.code == "DomainAlreadyExists"
    assert stats(sandbox_url)["customers_created"] == 1

    found = await client.find_customer_by_domain(created.domain)
    assert found is not None
    assert found.tenant_id == created.tenant_id
    assert found.has_reseller_relationship is True


async def test_create_customer_rejects_invalid_domain(client: PartnerCenterClient) -> None:
    with pytest.raises(ProviderError) as invalid:
        await client.create_customer(new_customer("contoso-mx.onmicrosoft.com"), request_id=rid())
    assert invalid.value.status == 400
    assert invalid.value.transient is False


async def test_find_customer_by_domain_and_acceptance(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    northwind = await client.find_customer_by_domain(NORTHWIND)
    assert northwind is not None
    assert northwind.tenant_id == NORTHWIND_TENANT
    assert northwind.company_name == "Northwind Traders México SA de CV"
    assert northwind.has_reseller_relationship is True

    fabrikam = await client.find_customer_by_domain("Fabrikam.onmicrosoft.com")
    assert fabrikam is not None
    assert fabrikam.tenant_id == FABRIKAM_TENANT
    assert fabrikam.has_reseller_relationship is False

    control(sandbox_url, f"/sandbox/customers/{FABRIKAM}/accept")
    accepted = await client.find_customer_by_domain(FABRIKAM)
    assert accepted is not None
    assert accepted.has_reseller_relationship is True

    assert await client.find_customer_by_domain("nadie.onmicrosoft.com") is None
    # starts_with must not be mistaken for an exact match.
    assert await client.find_customer_by_domain("northwind.onmicrosoft.co") is None


async def test_relationship_request_link(client: PartnerCenterClient) -> None:
    link = await client.relationship_request_link()
    assert link.startswith("https://admin.microsoft.com/")
    assert "invType=ResellerRelationship" in link
    assert "partnerId=" in link


async def test_place_order_is_idempotent_and_active_without_delay(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    request_id = rid()
    placed = await client.place_order(NORTHWIND_TENANT, LINES, request_id=request_id)
    assert placed.status == "completed"
    assert len(placed.subscriptions) == 2
    # New Commerce subscriptions name the catalog item bought: PRODUCT:SKU:AVAILABILITY.
    by_offer = {s.offer_id: s for s in placed.subscriptions}
    basic = by_offer["CFQ7TTC0LH18:0001:CFQ7TTC0K971"]
    assert basic.quantity == 5
    assert basic.status is SubscriptionStatus.ACTIVE
    assert basic.order_id == placed.order_id
    assert basic.term_duration == "P1Y"
    assert basic.auto_renew_enabled is True
    assert basic.creation_date is not None and basic.commitment_end_date is not None
    assert 360 <= (basic.commitment_end_date - basic.creation_date).days <= 366

    replayed = await client.place_order(NORTHWIND_TENANT, LINES, request_id=request_id)
    assert replayed.order_id == placed.order_id
    assert {s.subscription_id for s in replayed.subscriptions} == {
        s.subscription_id for s in placed.subscriptions
    }
    counts = stats(sandbox_url)
    assert counts["orders_created"] == 1
    assert counts["subscriptions_created"] == 2

    fetched = await client.get_order(NORTHWIND_TENANT, placed.order_id)
    assert fetched.status == "completed"
    listed = await client.list_subscriptions(NORTHWIND_TENANT)
    # Beside the seeded subscription northwind bought before this system.
    assert {s.subscription_id for s in listed} == {
        s.subscription_id for s in placed.subscriptions
    } | {NORTHWIND_LEGACY_SUBSCRIPTION}
    state = await client.subscription_provisioning(NORTHWIND_TENANT, basic.subscription_id)
    assert state is ProvisioningState.SUCCESS


async def test_order_refused_without_relationship_or_tenant(client: PartnerCenterClient) -> None:
    with pytest.raises(ProviderError) as no_relationship:
        await client.place_order(FABRIKAM_TENANT, LINES, request_id=rid())
    assert no_relationship.value.status == 403
    assert no_relationship.value.transient is False

    with pytest.raises(ProviderError) as unknown:
        await client.place_order(str(uuid.uuid4()), LINES, request_id=rid())
    assert unknown.value.status == 404
    assert unknown.value.transient is False


async def test_provisioning_goes_pending_then_success() -> None:
    # Long enough for a purchase's calls (availability, cart, checkout, subscriptions) to see
    # it pending on a loaded machine.
    with serve_in_background(token=TOKEN, provisioning_delay_seconds=2) as url:
        async with PartnerCenterClient(url, SecretStr(TOKEN), timeout=5.0) as pc:
            placed = await pc.place_order(NORTHWIND_TENANT, LINES[:1], request_id=rid())
            assert placed.status == "pending"
            (sub,) = placed.subscriptions
            assert sub.status is SubscriptionStatus.PENDING
            first = await pc.subscription_provisioning(NORTHWIND_TENANT, sub.subscription_id)
            assert first is ProvisioningState.PENDING

            seen = [first]
            for _ in range(200):
                await asyncio.sleep(0.05)
                state = await pc.subscription_provisioning(NORTHWIND_TENANT, sub.subscription_id)
                seen.append(state)
                if state is ProvisioningState.SUCCESS:
                    break
            assert seen[-1] is ProvisioningState.SUCCESS
            order = await pc.get_order(NORTHWIND_TENANT, placed.order_id)
            assert order.status == "completed"
            assert order.subscriptions[0].status is SubscriptionStatus.ACTIVE


async def test_suspend_and_reactivate_are_counted(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    placed = await client.place_order(NORTHWIND_TENANT, LINES[:1], request_id=rid())
    sub_id = placed.subscriptions[0].subscription_id

    suspend_id = rid()
    suspended = await client.set_subscription_status(
        NORTHWIND_TENANT, sub_id, SubscriptionStatus.SUSPENDED, request_id=suspend_id
    )
    assert suspended.status is SubscriptionStatus.SUSPENDED
    assert suspended.auto_renew_enabled is False  # suspending turns auto-renew off
    # A retry of the same suspension does not suspend twice.
    await client.set_subscription_status(
        NORTHWIND_TENANT, sub_id, SubscriptionStatus.SUSPENDED, request_id=suspend_id
    )
    listed = await client.get_subscription(NORTHWIND_TENANT, sub_id)
    assert listed.status is SubscriptionStatus.SUSPENDED

    reactivated = await client.set_subscription_status(
        NORTHWIND_TENANT, sub_id, SubscriptionStatus.ACTIVE, request_id=rid()
    )
    assert reactivated.status is SubscriptionStatus.ACTIVE
    counts = stats(sandbox_url)
    assert counts["subscriptions_suspended"] == 1
    assert counts["subscriptions_reactivated"] == 1


async def test_throttling_fault_is_transient_with_retry_after(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    control(
        sandbox_url,
        "/sandbox/faults",
        {
            "method": "POST",
            "path_prefix": f"/v1/customers/{NORTHWIND_TENANT}/carts",
            "status": 429,
            "retry_after": 1,
            "times": 1,
        },
    )
    request_id = rid()
    with pytest.raises(ProviderError) as throttled:
        await client.place_order(NORTHWIND_TENANT, LINES, request_id=request_id)
    assert throttled.value.status == 429
    assert throttled.value.transient is True
    assert throttled.value.retry_after_seconds == 1.0
    assert stats(sandbox_url)["orders_created"] == 0

    # The retry of the same logical request goes through once the fault is spent.
    placed = await client.place_order(NORTHWIND_TENANT, LINES, request_id=request_id)
    assert len(placed.subscriptions) == 2
    assert stats(sandbox_url)["orders_created"] == 1


async def test_wrong_token_is_unauthorized_and_not_transient(sandbox_url: str) -> None:
    async with PartnerCenterClient(sandbox_url, SecretStr("not-the-token")) as pc:
        with pytest.raises(ProviderError) as denied:
            await pc.find_customer_by_domain(NORTHWIND)
        with pytest.raises(ProviderError) as denied_head:
            await pc.domain_available(NORTHWIND)
    for error in (denied.value, denied_head.value):
        assert error.status == 401
        assert error.transient is False
        assert "not-the-token" not in str(error)
    assert denied.value.code == "Unauthorized"


async def test_unreachable_provider_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with PartnerCenterClient(f"http://127.0.0.1:{closed_port}", SecretStr(TOKEN)) as pc:
        with pytest.raises(ProviderError) as unreachable:
            await pc.domain_available("nuevo.onmicrosoft.com")
    assert unreachable.value.status == 503
    assert unreachable.value.transient is True
    assert TOKEN not in str(unreachable.value)


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox" / "state.json"
    create_id = rid()
    with serve_in_background(token=TOKEN, state_file=state_file) as url:
        async with PartnerCenterClient(url, SecretStr(TOKEN)) as pc:
            created = await pc.create_customer(new_customer(), request_id=create_id)
            placed = await pc.place_order(created.tenant_id, LINES[:1], request_id=rid())
            sub_id = placed.subscriptions[0].subscription_id
            await pc.set_subscription_status(
                created.tenant_id, sub_id, SubscriptionStatus.SUSPENDED, request_id=rid()
            )
        control(url, f"/sandbox/customers/{FABRIKAM}/accept")
    assert state_file.exists()

    with serve_in_background(token=TOKEN, state_file=state_file) as url:
        async with PartnerCenterClient(url, SecretStr(TOKEN)) as pc:
            found = await pc.find_customer_by_domain(created.domain)
            assert found is not None and found.tenant_id == created.tenant_id
            (sub,) = await pc.list_subscriptions(created.tenant_id)
            assert sub.subscription_id == sub_id
            assert sub.status is SubscriptionStatus.SUSPENDED
            fabrikam = await pc.find_customer_by_domain(FABRIKAM)
            assert fabrikam is not None and fabrikam.has_reseller_relationship
            # Idempotency survives the restart too: the old request id replays.
            again = await pc.create_customer(new_customer(), request_id=create_id)
            assert again.tenant_id == created.tenant_id
        counts = stats(url)
        assert counts["customers_created"] == 1
        assert counts["orders_created"] == 1
        assert counts["subscriptions_suspended"] == 1

        control(url, "/sandbox/reset")
        async with PartnerCenterClient(url, SecretStr(TOKEN)) as pc:
            assert await pc.find_customer_by_domain(created.domain) is None
            assert await pc.domain_available(created.domain) is True


async def test_logs_carry_call_facts_but_never_secrets(client: PartnerCenterClient) -> None:
    with capture_logs() as logs:
        created = await client.create_customer(new_customer(), request_id=rid())
        await client.place_order(
            created.tenant_id, LINES, request_id=rid(), new_tenant=new_customer()
        )
    password = created.admin_password.get_secret_value()
    dumped = repr(logs)
    assert password not in dumped
    assert TOKEN not in dumped
    assert password not in repr(created)

    calls = [entry for entry in logs if entry["event"] == "partner_center.call"]
    writes = [
        (c["method"], c["path"].replace(created.tenant_id, "{id}"), c["status"])
        for c in calls
        if c["method"] == "POST"
    ]
    assert writes[:2] == [
        ("POST", "/v1/validations/address", 200),
        ("POST", "/v1/customers", 201),
    ]
    assert writes[-2][:2] == ("POST", "/v1/customers/{id}/carts")
    assert writes[-1][1].endswith("/checkout") and writes[-1][2] == 201
    for call in calls:
        uuid.UUID(call["correlation_id"])
        assert call["elapsed_ms"] >= 0
    assert len({c["correlation_id"] for c in calls}) == len(calls)  # new id per call
