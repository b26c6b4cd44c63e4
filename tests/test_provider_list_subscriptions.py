"""Listing a tenant's subscriptions (what adoption reads): PartnerCenterClient against the
sandbox over HTTP, with the provider's real purchase dates, whoever bought them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.port import OrderLine, ProviderError, SubscriptionStatus
from sandbox.server import serve_in_background
from sandbox.state import (
    FABRIKAM_TENANT,
    NORTHWIND_LEGACY_ORDER,
    NORTHWIND_LEGACY_SUBSCRIPTION,
    NORTHWIND_TENANT,
)

TOKEN = "sandbox-token"
WINDOW = timedelta(hours=168)
LINE = OrderLine(
    line_number=0,
    offer_id="CFQ7TTC0LDPB:0001",
    quantity=3,
    term_duration="P1M",
    billing_cycle="monthly",
    friendly_name="Microsoft 365 Business Standard",
)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve_in_background(port=0, token=TOKEN) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[PartnerCenterClient]:
    control(sandbox_url, "/sandbox/reset")
    async with PartnerCenterClient(sandbox_url, SecretStr(TOKEN), timeout=5.0) as pc:
        yield pc


def control(base_url: str, path: str, body: dict[str, Any] | None = None) -> None:
    httpx.post(f"{base_url}{path}", json=body).raise_for_status()


async def test_the_subscription_bought_before_this_system_is_listed_with_its_real_dates(
    client: PartnerCenterClient,
) -> None:
    [legacy] = await client.list_subscriptions(NORTHWIND_TENANT)

    assert legacy.subscription_id == NORTHWIND_LEGACY_SUBSCRIPTION
    assert legacy.order_id == NORTHWIND_LEGACY_ORDER
    assert (legacy.offer_id, legacy.offer_name) == (
        "CFQ7TTC0LH18:0001",
        "Microsoft 365 Business Basic",
    )
    assert (legacy.status, legacy.quantity, legacy.auto_renew_enabled) == (
        SubscriptionStatus.ACTIVE,
        8,
        True,
    )
    assert (legacy.term_duration, legacy.billing_cycle) == ("P1Y", "monthly")
    bought = legacy.effective_start_date
    assert bought is not None and legacy.creation_date == bought
    assert timedelta(days=10) <= datetime.now(UTC) - bought < timedelta(days=10, minutes=5)
    assert legacy.cancellation_allowed_until == bought + WINDOW  # outside its window
    assert legacy.commitment_end_date is not None
    # A one-year term: its last day, as Partner Center dates it (midnight UTC).
    assert timedelta(days=363) < legacy.commitment_end_date - bought < timedelta(days=366)


async def test_the_list_follows_what_happens_to_each_subscription(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    placed = await client.place_order(NORTHWIND_TENANT, [LINE], request_id=str(uuid.uuid4()))
    [new] = placed.subscriptions
    await client.set_auto_renew(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, False, request_id=str(uuid.uuid4())
    )
    await client.cancel_subscription(
        NORTHWIND_TENANT, new.subscription_id, request_id=str(uuid.uuid4())
    )
    control(sandbox_url, f"/sandbox/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}/renew")

    listed = {s.subscription_id: s for s in await client.list_subscriptions(NORTHWIND_TENANT)}

    assert set(listed) == {NORTHWIND_LEGACY_SUBSCRIPTION, new.subscription_id}
    cancelled = listed[new.subscription_id]
    assert cancelled.status is SubscriptionStatus.DELETED and cancelled.quantity == 3
    assert cancelled.offer_name == "Microsoft 365 Business Standard"
    renewed = listed[NORTHWIND_LEGACY_SUBSCRIPTION]
    assert renewed.auto_renew_enabled is False
    # A renewal starts a new term: the window is measured from it, not from the purchase.
    assert renewed.effective_start_date is not None and renewed.creation_date is not None
    assert renewed.effective_start_date > renewed.creation_date + timedelta(days=9)
    assert renewed.cancellation_allowed_until == renewed.effective_start_date + WINDOW


def test_the_answer_has_partner_centers_collection_shape(sandbox_url: str) -> None:
    control(sandbox_url, "/sandbox/reset")
    response = httpx.get(
        f"{sandbox_url}/v1/customers/{NORTHWIND_TENANT}/subscriptions",
        headers={"Authorization": f"Bearer {TOKEN}", "MS-Contract-Version": "v1"},
    ).raise_for_status()

    body = response.json()
    assert body["totalCount"] == len(body["items"]) == 1
    assert body["attributes"] == {"objectType": "Collection"}
    [item] = body["items"]
    for field in (
        "effectiveStartDate",
        "commitmentEndDate",
        "cancellationAllowedUntilDate",
        "autoRenewEnabled",
        "status",
        "quantity",
        "offerId",
        "offerName",
    ):
        assert field in item, field


async def test_a_tenant_without_subscriptions_lists_none_and_an_unknown_one_is_refused(
    client: PartnerCenterClient,
) -> None:
    assert await client.list_subscriptions(FABRIKAM_TENANT) == []

    with pytest.raises(ProviderError) as unknown:
        await client.list_subscriptions(str(uuid.uuid4()))
    assert unknown.value.status == 404 and not unknown.value.transient
