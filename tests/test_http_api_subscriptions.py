"""Subscription changes and renewal payments over real HTTP (uvicorn on a free port) against
the time-skipping test server with the real activities, the sandbox and the registry: each
change is the workflow's Update under the request's Idempotency-Key (the same key again returns
the first answer; with another request, 422), refusals are 409 with the rule and the way out,
and another reseller's subscription is answered as an unknown one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from http_api.problems import TYPE_PREFIX
from tests.support.http_api import Api, api_for
from tests.support.stack import Stack, example

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTOSO = "contosomx.onmicrosoft.com"
KEY = "Idempotency-Key"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with api_for(stack.settings, stack.registry, stack.tracking_client) as api:
        yield api


async def active_contoso(stack: Stack) -> tuple[str, str]:
    """The example create order (reseller RSL-042) run to ACTIVE: its subscription and tenant."""
    result = await stack.settle(await stack.submit(example("order-create.json")))
    assert result.stage.value == "ACTIVE"
    [license_] = stack.registry.list_licenses(CONTOSO)
    return license_.subscription_id, license_.tenant_id


def detail(response: Any, status: int, slug: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["status"], body["type"]) == (status, TYPE_PREFIX + slug), body
    return body["detail"]


async def test_seats_under_an_idempotency_key_are_changed_once(stack: Stack, api: Api) -> None:
    sub, tenant_id = await active_contoso(stack)
    path = f"/v1/subscriptions/{sub}/seats"

    shown = await api.call("GET", f"/v1/subscriptions/{sub}", "RSL-042")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["status"], shown.json()["seats"]) == ("ACTIVE", 10)

    first = await api.call("PUT", path, "RSL-042", json={"quantity": 15}, headers={KEY: "k-15"})
    assert first.status_code == 200, first.text
    assert (first.json()["seats"], first.headers[KEY]) == (15, "k-15")
    assert "idempotent-replayed" not in first.headers
    again = await api.call("PUT", path, "RSL-042", json={"quantity": 15}, headers={KEY: "k-15"})
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    reused = await api.call("PUT", path, "RSL-042", json={"quantity": 12}, headers={KEY: "k-15"})
    reason = detail(reused, 422, "idempotency-key-reused")
    assert f"{KEY} k-15 was first used for another request (PUT {path}" in reason
    assert reused.json()["errors"] == [{"field": KEY, "rule": "already used for another request"}]
    assert stack.stats()["quantity_changes"] == 1
    assert (await stack.provider.get_subscription(tenant_id, sub)).quantity == 15

    made_up = await api.call("POST", path, "ops", json={"add": 2})
    assert made_up.status_code == 200, made_up.text
    assert made_up.json()["seats"] == 17 and len(made_up.headers[KEY]) == 36  # a new UUID
    repeat = await api.call(
        "POST", path, "ops", json={"add": 2}, headers={KEY: made_up.headers[KEY]}
    )
    assert repeat.content == made_up.content and repeat.headers["idempotent-replayed"] == "true"
    assert (await stack.provider.get_subscription(tenant_id, sub)).quantity == 17


async def test_refusals_are_409_with_the_rule_and_the_way_out(stack: Stack, api: Api) -> None:
    sub, tenant_id = await active_contoso(stack)

    moved = await api.call(
        "POST",
        f"/v1/subscriptions/{sub}/transfer",
        "RSL-042",
        json={"to_domain": "fabrikam.onmicrosoft.com"},
    )
    reason = detail(moved, 409, "refused")
    assert "a license never leaves its tenant" in reason and "Way out" in reason
    assert moved.json()["code"] == "LicenseTransferRefused"

    current = await api.call("GET", f"/v1/subscriptions/{sub}", "RSL-042")
    end = datetime.fromisoformat(current.json()["cancellable_until"])
    await stack.env.sleep(end - await stack.env.get_current_time())  # 168 h after the purchase
    fewer = await api.call(
        "PUT",
        f"/v1/subscriptions/{sub}/seats",
        "RSL-042",
        json={"quantity": 9},
        headers={KEY: "k-9"},
    )
    reason = detail(fewer, 409, "refused")
    assert "seats can only be removed within 168 h" in reason and "auto-renew off" in reason
    assert fewer.json()["code"] == "ChangeWindowClosed"
    # A refusal changed nothing, so it is not kept: the same key asks again (same answer here).
    assert (
        detail(
            await api.call(
                "PUT",
                f"/v1/subscriptions/{sub}/seats",
                "RSL-042",
                json={"quantity": 9},
                headers={KEY: "k-9"},
            ),
            409,
            "refused",
        )
        == reason
    )
    assert (await stack.provider.get_subscription(tenant_id, sub)).quantity == 10


async def test_bad_input_is_422_naming_the_field_and_asks_nothing(stack: Stack, api: Api) -> None:
    sub, _ = await active_contoso(stack)
    seats = f"/v1/subscriptions/{sub}/seats"

    base = f"/v1/subscriptions/{sub}"
    cases = [
        ("POST", seats, {"add": 0}, {}, "add", "seats to add, a whole number of at least 1"),
        ("POST", seats, {"add": "2"}, {}, "add", "must be a whole number (a JSON number"),
        ("PUT", seats, {"seats": 3}, {}, "seats", "not a field of this request"),
        ("PUT", seats, {"seats": 3}, {}, "quantity", "required, but missing"),
        ("PUT", seats, {"quantity": 3}, {KEY: "a b"}, KEY, "must be 1-200 letters, digits"),
        ("PUT", f"{base}/auto-renew", {"enabled": "no"}, {}, "enabled", "true or false"),
        ("POST", f"{base}/transfer", {"to_domain": "x.com"}, {}, "to_domain", ".onmicrosoft.com"),
        ("GET", "/v1/subscriptions/a%20b", None, {}, "subscription_id", "subscription id, 1-128"),
    ]
    for method, path, body, headers, field, rule in cases:
        answer = await api.call(method, path, "RSL-042", json=body, headers=headers)
        assert detail(answer, 422, "invalid-input"), (method, path, body)
        errors = {error["field"]: error["rule"] for error in answer.json()["errors"]}
        assert rule in errors[field], errors
    assert stack.stats()["quantity_changes"] == 0 and stack.stats()["auto_renew_changes"] == 0


async def test_another_resellers_subscription_is_answered_as_an_unknown_one(
    stack: Stack, api: Api
) -> None:
    sub, tenant_id = await active_contoso(stack)
    unknown = str(uuid.uuid4())

    for method, suffix, body in [
        ("GET", "", None),
        ("PUT", "/seats", {"quantity": 1}),
        ("POST", "/cancellation", None),
        ("PUT", "/auto-renew", {"enabled": False}),
    ]:
        theirs = await api.call(method, f"/v1/subscriptions/{sub}{suffix}", "RSL-077", json=body)
        nobodys = await api.call(
            method, f"/v1/subscriptions/{unknown}{suffix}", "RSL-077", json=body
        )
        assert detail(theirs, 404, "not-found").replace(sub, "<id>") == detail(
            nobodys, 404, "not-found"
        ).replace(unknown, "<id>")
    assert "csp subscriptions adopt" in nobodys.json()["detail"]
    remote = await stack.provider.get_subscription(tenant_id, sub)
    assert (remote.quantity, remote.status.value) == (10, "active")
    assert (await api.call("GET", f"/v1/subscriptions/{sub}", "ops")).status_code == 200


async def test_cancelled_once_under_its_key_then_answered_the_same(stack: Stack, api: Api) -> None:
    sub, tenant_id = await active_contoso(stack)
    base = f"/v1/subscriptions/{sub}"

    off = await api.call("PUT", f"{base}/auto-renew", "RSL-042", json={"enabled": False})
    assert off.status_code == 200 and off.json()["auto_renew"] is False
    cancelled = await api.call("POST", f"{base}/cancellation", "RSL-042", headers={KEY: "c-1"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    handle = stack.env.client.get_workflow_handle(f"subscription-{sub}")
    await stack.settle(handle)  # the workflow has ended

    again = await api.call("POST", f"{base}/cancellation", "RSL-042", headers={KEY: "c-1"})
    assert (again.status_code, again.content) == (200, cancelled.content)
    other_key = await api.call("POST", f"{base}/cancellation", "RSL-042", headers={KEY: "c-2"})
    assert f"subscription {sub} is CANCELLED" in detail(other_key, 409, "refused")
    assert stack.stats()["subscriptions_cancelled"] == 1
    assert (await api.call("GET", base, "RSL-042")).json()["status"] == "CANCELLED"


async def test_payments_are_recorded_once_and_answered_the_same(stack: Stack, api: Api) -> None:
    sub, _ = await active_contoso(stack)
    period = "2026-12"
    due = datetime(2026, 12, 26, 6, tzinfo=UTC)
    stack.registry.upsert_charge(sub, period, Decimal("1290.00"), due)
    payment = {"subscription_id": sub, "period": period, "reference": "SPEI-1"}
    paid_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    by_reseller = await api.call("POST", "/v1/payments", "RSL-042", json=payment)
    assert "only ops do this" in detail(by_reseller, 403, "forbidden")
    first = await api.call(
        "POST", "/v1/payments", "ops", json=payment | {"paid_at": paid_at}, headers={KEY: "p-1"}
    )
    assert first.status_code == 200, first.text
    charge = first.json()["charge"]
    assert (charge["status"], charge["amount_paid"], charge["amount_due"]) == (
        "PAID",
        "1290.00",
        "0.00",
    )
    assert first.json()["reference"] == "SPEI-1" and charge["payment_reference"] == "SPEI-1"

    again = await api.call(
        "POST", "/v1/payments", "ops", json=payment | {"paid_at": paid_at}, headers={KEY: "p-1"}
    )
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    reused = await api.call(
        "POST", "/v1/payments", "ops", json=payment | {"amount": "10.00"}, headers={KEY: "p-1"}
    )
    assert "first used for another request (POST /v1/payments" in detail(
        reused, 422, "idempotency-key-reused"
    )
    same_reference = await api.call("POST", "/v1/payments", "ops", json=payment)
    assert same_reference.status_code == 200 and same_reference.json() == first.json()
    assert same_reference.headers["idempotent-replayed"] == "true"
    other_payment = await api.call(
        "POST", "/v1/payments", "ops", json=payment | {"reference": "SPEI-2"}
    )
    assert "already paid (reference SPEI-1)" in detail(other_payment, 409, "refused")
    assert len(stack.registry.list_payments(sub, period)) == 1

    listed = await api.call(
        "GET", "/v1/renewals", "ops", params={"period": period, "status": "PAID"}
    )
    assert [(row["subscription_id"], row["amount_due"]) for row in listed.json()] == [(sub, "0.00")]
    assert (await api.call("GET", "/v1/renewals", "RSL-042")).status_code == 403

    for body, field, rule in [
        (payment | {"period": "2026-13"}, "period", "billing period must be YYYY-MM"),
        (payment | {"amount": "mucho"}, "amount", "not a decimal amount"),
        (payment | {"amount": "-5"}, "amount", "must be a positive amount in MXN"),
        (payment | {"paid_at": "2999-01-01T00:00"}, "paid_at", "cannot be in the future"),
        (payment | {"subscription_id": "a b"}, "subscription_id", "provider's subscription id"),
        ({"period": period}, "subscription_id", "required, but missing"),
    ]:
        answer = await api.call("POST", "/v1/payments", "ops", json=body)
        assert detail(answer, 422, "invalid-input")
        assert (
            answer.json()["errors"][0]["field"] == field
            and rule in answer.json()["errors"][0]["rule"]
        )
    unknown = await api.call("POST", "/v1/payments", "ops", json=payment | {"period": "2027-01"})
    assert detail(unknown, 404, "not-found")
    bad_status = await api.call("GET", "/v1/renewals", "ops", params={"status": "LATE"})
    assert bad_status.json()["errors"][0]["field"] == "status"
