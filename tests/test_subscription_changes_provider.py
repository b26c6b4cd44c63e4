"""Seat changes, cancellation and auto-renew: PartnerCenterClient against the sandbox over HTTP.

The sandbox plays Partner Center's New Commerce rules (168-hour windows, error codes), so
these tests pin what the real API accepts and refuses, and what each refusal is called.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.port import (
    CANCELLATION_WINDOW_PASSED,
    QUANTITY_CANNOT_DECREASE,
    QUANTITY_OUT_OF_RANGE,
    QUANTITY_WHILE_SUSPENDED,
    SUBSCRIPTION_DELETED,
    SUBSCRIPTION_SUSPENDED,
    WINDOW_CLOSED_CODES,
    OrderLine,
    ProviderError,
    ProviderSubscription,
    RefundableSeats,
    SubscriptionStatus,
)
from sandbox.server import serve_in_background
from sandbox.state import NORTHWIND_LEGACY_SUBSCRIPTION, NORTHWIND_TENANT

TOKEN = "sandbox-token"
WINDOW = timedelta(hours=168)
LINE = OrderLine(
    line_number=0,
    offer_id="CFQ7TTC0LH18:0001",
    quantity=5,
    term_duration="P1Y",
    billing_cycle="monthly",
    friendly_name="Microsoft 365 Business Basic",
)


def rid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve_in_background(port=0, token=TOKEN) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[PartnerCenterClient]:
    control(sandbox_url, "/sandbox/reset").raise_for_status()
    async with PartnerCenterClient(sandbox_url, SecretStr(TOKEN), timeout=5.0) as pc:
        yield pc


def stats(base_url: str) -> dict[str, Any]:
    return httpx.get(f"{base_url}/sandbox/stats").raise_for_status().json()


def control(base_url: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", json=body)


def backdate(base_url: str, sub_id: str, **amount: float) -> None:
    control(base_url, f"/sandbox/subscriptions/{sub_id}/backdate", amount).raise_for_status()


async def bought(client: PartnerCenterClient) -> ProviderSubscription:
    placed = await client.place_order(NORTHWIND_TENANT, [LINE], request_id=rid())
    (sub,) = placed.subscriptions
    return sub


async def refused(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    return caught.value


async def test_a_new_subscription_carries_its_windows(client: PartnerCenterClient) -> None:
    sub = await bought(client)
    assert sub.creation_date is not None
    assert sub.effective_start_date == sub.creation_date
    assert sub.cancellation_allowed_until == sub.creation_date + WINDOW
    assert sub.refundable_quantity == (
        RefundableSeats(quantity=5, allowed_until=sub.creation_date + WINDOW),
    )
    assert sub.refundable_total == 5


async def test_seeded_northwind_subscription_is_ten_days_old(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    legacy = await client.get_subscription(NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION)
    assert legacy.status is SubscriptionStatus.ACTIVE
    assert legacy.quantity == 8
    assert legacy.auto_renew_enabled is True
    assert legacy.creation_date is not None and legacy.cancellation_allowed_until is not None
    age = datetime.now(UTC) - legacy.creation_date
    assert timedelta(days=10) <= age < timedelta(days=10, minutes=5)
    assert legacy.cancellation_allowed_until == legacy.creation_date + WINDOW
    assert legacy.cancellation_allowed_until < datetime.now(UTC)
    assert legacy.refundable_total == 0
    # Bought before this system: no effect counted (on the totals, nor by face).
    counted = stats(sandbox_url)
    by_face = counted.pop("by_face")
    assert set(counted.values()) == {0}
    assert {face: set(values.values()) for face, values in by_face.items()} == {
        "partner_center": {0},
        "xvantage": {0},
    }


async def test_seats_added_then_removed_inside_the_window(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    more = await client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 10, request_id=rid())
    assert more.quantity == 10
    assert more.refundable_total == 10
    assert [seats.quantity for seats in more.refundable_quantity] == [5, 5]

    back = await client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 5, request_id=rid())
    assert back.quantity == 5
    assert back.refundable_total == 5
    fetched = await client.get_subscription(NORTHWIND_TENANT, sub.subscription_id)
    assert fetched.quantity == 5
    assert stats(sandbox_url)["quantity_changes"] == 2


async def test_removing_seats_after_the_window_is_refused_with_800090(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    backdate(sandbox_url, sub.subscription_id, days=10)

    error = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 4, request_id=rid())
    )
    assert (error.status, error.code) == (400, QUANTITY_CANNOT_DECREASE)
    assert error.code in WINDOW_CLOSED_CODES
    assert error.transient is False
    assert "only 0 seat(s) are refundable" in str(error)

    # Adding is allowed any time, and the seats just added can be removed again (their own
    # 168 hours), but not one more.
    more = await client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 7, request_id=rid())
    assert (more.quantity, more.refundable_total) == (7, 2)
    error = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 4, request_id=rid())
    )
    assert error.code == QUANTITY_CANNOT_DECREASE
    back = await client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 5, request_id=rid())
    assert (back.quantity, back.refundable_total) == (5, 0)
    assert stats(sandbox_url)["quantity_changes"] == 2  # refusals are not counted


async def test_the_window_edge(client: PartnerCenterClient, sandbox_url: str) -> None:
    inside = await bought(client)
    backdate(sandbox_url, inside.subscription_id, hours=167, seconds=3590)  # 10 s left
    removed = await client.change_quantity(
        NORTHWIND_TENANT, inside.subscription_id, 4, request_id=rid()
    )
    assert removed.quantity == 4

    at_edge = await bought(client)
    backdate(sandbox_url, at_edge.subscription_id, hours=168)
    error = await refused(
        client.change_quantity(NORTHWIND_TENANT, at_edge.subscription_id, 4, request_id=rid())
    )
    assert error.code == QUANTITY_CANNOT_DECREASE
    error = await refused(
        client.cancel_subscription(NORTHWIND_TENANT, at_edge.subscription_id, request_id=rid())
    )
    assert error.code == CANCELLATION_WINDOW_PASSED


async def test_below_one_seat_is_refused_with_2002(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    error = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 0, request_id=rid())
    )
    assert (error.status, error.code, error.transient) == (400, QUANTITY_OUT_OF_RANGE, False)
    unchanged = await client.get_subscription(NORTHWIND_TENANT, sub.subscription_id)
    assert unchanged.quantity == 5
    assert stats(sandbox_url)["quantity_changes"] == 0


async def test_a_suspended_subscription_refuses_changes(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    await client.set_subscription_status(
        NORTHWIND_TENANT, sub.subscription_id, SubscriptionStatus.SUSPENDED, request_id=rid()
    )
    seats = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 6, request_id=rid())
    )
    assert (seats.status, seats.code, seats.transient) == (400, QUANTITY_WHILE_SUSPENDED, False)
    renew = await refused(
        client.set_auto_renew(NORTHWIND_TENANT, sub.subscription_id, True, request_id=rid())
    )
    assert (renew.status, renew.code) == (400, SUBSCRIPTION_SUSPENDED)
    cancel = await refused(
        client.cancel_subscription(NORTHWIND_TENANT, sub.subscription_id, request_id=rid())
    )
    assert (cancel.status, cancel.code) == (400, SUBSCRIPTION_SUSPENDED)
    still = await client.get_subscription(NORTHWIND_TENANT, sub.subscription_id)
    assert (still.status, still.quantity) == (SubscriptionStatus.SUSPENDED, 5)
    counts = stats(sandbox_url)
    assert (counts["quantity_changes"], counts["auto_renew_changes"]) == (0, 0)
    assert counts["subscriptions_cancelled"] == 0


async def test_cancel_inside_the_window_is_done_once(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    request_id = rid()
    cancelled = await client.cancel_subscription(
        NORTHWIND_TENANT, sub.subscription_id, request_id=request_id
    )
    assert cancelled.status is SubscriptionStatus.DELETED
    assert cancelled.auto_renew_enabled is False
    assert cancelled.refundable_total == 0
    again = await client.cancel_subscription(
        NORTHWIND_TENANT, sub.subscription_id, request_id=request_id
    )
    assert again.status is SubscriptionStatus.DELETED
    counts = stats(sandbox_url)
    assert (counts["subscriptions_cancelled"], counts["requests_replayed"]) == (1, 1)

    error = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 6, request_id=rid())
    )
    assert (error.status, error.code) == (400, SUBSCRIPTION_DELETED)


async def test_cancel_after_the_window_is_refused_with_900117(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    error = await refused(
        client.cancel_subscription(
            NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, request_id=rid()
        )
    )
    assert (error.status, error.code, error.transient) == (400, CANCELLATION_WINDOW_PASSED, False)
    assert error.code in WINDOW_CLOSED_CODES
    assert "7-day cancellation window" in str(error)
    legacy = await client.get_subscription(NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION)
    assert legacy.status is SubscriptionStatus.ACTIVE
    assert stats(sandbox_url)["subscriptions_cancelled"] == 0


async def test_auto_renew_off_and_on(client: PartnerCenterClient, sandbox_url: str) -> None:
    # Allowed outside the window too: the way out when seats can no longer be removed.
    off_id = rid()
    off = await client.set_auto_renew(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, False, request_id=off_id
    )
    assert off.auto_renew_enabled is False
    await client.set_auto_renew(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, False, request_id=off_id
    )
    # Asking for what already holds, under a new request id, changes nothing.
    await client.set_auto_renew(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, False, request_id=rid()
    )
    on = await client.set_auto_renew(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, True, request_id=rid()
    )
    assert on.auto_renew_enabled is True
    assert stats(sandbox_url)["auto_renew_changes"] == 2


async def test_the_same_request_id_changes_seats_once(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    request_id = rid()
    first = await client.change_quantity(
        NORTHWIND_TENANT, sub.subscription_id, 7, request_id=request_id
    )
    second = await client.change_quantity(
        NORTHWIND_TENANT, sub.subscription_id, 7, request_id=request_id
    )
    assert first == second
    assert first.quantity == 7
    counts = stats(sandbox_url)
    assert (counts["quantity_changes"], counts["requests_replayed"]) == (1, 1)


async def test_a_lost_answer_then_the_retry_changes_seats_once(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    control(
        sandbox_url,
        "/sandbox/faults",
        {"kind": "lost_response", "method": "PATCH", "path_prefix": "/v1/customers"},
    ).raise_for_status()
    request_id = rid()
    lost = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 9, request_id=request_id)
    )
    assert lost.transient is True
    retried = await client.change_quantity(
        NORTHWIND_TENANT, sub.subscription_id, 9, request_id=request_id
    )
    assert retried.quantity == 9
    assert stats(sandbox_url)["quantity_changes"] == 1


async def test_a_change_during_a_renewal_gets_409_then_goes_through(
    client: PartnerCenterClient, sandbox_url: str
) -> None:
    sub = await bought(client)
    control(
        sandbox_url, f"/sandbox/subscriptions/{sub.subscription_id}/renewing", {"calls": 1}
    ).raise_for_status()
    request_id = rid()
    busy = await refused(
        client.change_quantity(NORTHWIND_TENANT, sub.subscription_id, 6, request_id=request_id)
    )
    assert busy.status == 409
    assert busy.transient is True  # activities retry it after ~2 minutes
    assert stats(sandbox_url)["quantity_changes"] == 0
    done = await client.change_quantity(
        NORTHWIND_TENANT, sub.subscription_id, 6, request_id=request_id
    )
    assert done.quantity == 6

    control(
        sandbox_url, f"/sandbox/subscriptions/{sub.subscription_id}/renewing", {"seconds": 0.5}
    ).raise_for_status()
    busy = await refused(
        client.set_auto_renew(NORTHWIND_TENANT, sub.subscription_id, False, request_id=rid())
    )
    assert busy.status == 409
    await asyncio.sleep(0.6)
    off = await client.set_auto_renew(
        NORTHWIND_TENANT, sub.subscription_id, False, request_id=rid()
    )
    assert off.auto_renew_enabled is False
    counts = stats(sandbox_url)
    assert (counts["quantity_changes"], counts["auto_renew_changes"]) == (1, 1)


async def test_a_renewal_opens_a_new_window(client: PartnerCenterClient, sandbox_url: str) -> None:
    control(
        sandbox_url, f"/sandbox/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}/renew"
    ).raise_for_status()
    renewed = await client.get_subscription(NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION)
    assert renewed.effective_start_date is not None
    assert renewed.creation_date is not None
    assert renewed.effective_start_date - renewed.creation_date >= timedelta(days=10)
    assert renewed.cancellation_allowed_until == renewed.effective_start_date + WINDOW
    assert renewed.refundable_total == 8
    fewer = await client.change_quantity(
        NORTHWIND_TENANT, NORTHWIND_LEGACY_SUBSCRIPTION, 6, request_id=rid()
    )
    assert fewer.quantity == 6


def test_sandbox_controls_name_what_is_wrong(sandbox_url: str) -> None:
    path = f"/sandbox/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}"
    empty = control(sandbox_url, f"{path}/backdate", {})
    assert empty.status_code == 400
    assert "days, hours or seconds" in empty.json()["description"]
    both = control(sandbox_url, f"{path}/renewing", {"seconds": 1, "calls": 1})
    assert both.status_code == 400
    assert "exactly one of seconds or calls" in both.json()["description"]
    unknown = control(sandbox_url, f"/sandbox/subscriptions/{uuid.uuid4()}/backdate", {"days": 1})
    assert unknown.status_code == 404


def test_a_status_change_goes_alone(sandbox_url: str) -> None:
    path = f"/v1/customers/{NORTHWIND_TENANT}/subscriptions/{NORTHWIND_LEGACY_SUBSCRIPTION}"
    auth = {"Authorization": f"Bearer {TOKEN}", "MS-Contract-Version": "v1"}
    etag = httpx.get(f"{sandbox_url}{path}", headers=auth).json()["attributes"]["etag"]
    both = httpx.patch(
        f"{sandbox_url}{path}",
        json={"status": "suspended", "quantity": 9},
        headers={**auth, "MS-RequestId": rid(), "If-Match": etag},
    )
    assert both.status_code == 400
    assert both.json()["code"] == "800002"
