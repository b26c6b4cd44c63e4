"""Orders and licenses over real HTTP (uvicorn on a free port) against the time-skipping test
server with a worker running the real activities, the Partner Center sandbox over HTTP, the
SMTP sink and the registry (tests/support/stack.py): the whole order path, the same order
again, conflicts, refusals, invalid input, and another reseller's orders answered as unknown."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from http_api.problems import TYPE_PREFIX
from tests.support.http_api import Api, api_for
from tests.support.stack import EXAMPLES, Stack
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTOSO = "contosomx.onmicrosoft.com"
FABRIKAM = "fabrikam.onmicrosoft.com"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with api_for(stack.settings, stack.registry, stack.tracking_client) as api:
        yield api


def order_json(name: str, **changes: Any) -> dict[str, Any]:
    """An example order as an order system sends it, with a fresh order id."""
    data = json.loads((EXAMPLES / name).read_text())
    data["order_id"] = f"T-{uuid.uuid4().hex[:12].upper()}"
    data.update(changes)
    return data


async def settle(stack: Stack, order_id: str) -> Any:
    handle = stack.env.client.get_workflow_handle_for(LicenseOrderWorkflow.run, f"order-{order_id}")
    return await stack.settle(handle)


def detail(response: Any, status: int, slug: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["status"], body["type"]) == (status, TYPE_PREFIX + slug), body
    return body["detail"]


async def test_an_order_reaches_active_and_the_same_order_gets_the_same_answer(
    stack: Stack, api: Api
) -> None:
    order = order_json("order-create.json")
    oid = order["order_id"]

    first = await api.call("POST", "/v1/orders", "RSL-042", json=order)

    assert first.status_code == 202, first.text
    assert first.headers["location"] == f"/v1/orders/{oid}"
    assert first.json() == {
        "order_id": oid,
        "workflow_id": f"order-{oid}",
        "status_url": f"/v1/orders/{oid}",
    }
    assert "idempotent-replayed" not in first.headers
    while_running = await api.call("POST", "/v1/orders", "RSL-042", json=order)
    assert (while_running.status_code, while_running.json()) == (202, first.json())
    assert while_running.headers["location"] == first.headers["location"]
    assert while_running.headers["idempotent-replayed"] == "true"

    assert (await settle(stack, oid)).stage.value == "ACTIVE"
    after = await api.call("POST", "/v1/orders", "RSL-042", json=order)
    assert (after.status_code, after.json()) == (202, first.json())  # the registry answers
    assert stack.stats()["orders_created"] == 1

    status = await api.call("GET", f"/v1/orders/{oid}", "RSL-042")
    assert status.status_code == 200, status.text
    shown = status.json()
    assert (shown["stage"], shown["domain"], shown["source"]) == ("ACTIVE", CONTOSO, "workflow")
    assert len(shown["subscription_ids"]) == 1
    licenses = (await api.call("GET", "/v1/licenses", "RSL-042", params={"domain": CONTOSO})).json()
    assert [
        (lic["sku"], lic["quantity"], lic["status"], lic["reseller_id"]) for lic in licenses
    ] == [("CFQ7TTC0LH18:0001", 10, "active", "RSL-042")]
    assert licenses[0]["subscription_id"] == shown["subscription_ids"][0]


async def test_another_resellers_order_is_answered_as_an_unknown_one(
    stack: Stack, api: Api
) -> None:
    order = order_json("order-create.json")
    oid = order["order_id"]
    assert (await api.call("POST", "/v1/orders", "RSL-042", json=order)).status_code == 202
    await settle(stack, oid)
    unknown = f"T-{uuid.uuid4().hex[:12].upper()}"

    def same_words(path: str, order_id: str, status: int = 404) -> Any:
        async def ask(who: str, method: str = "GET", **kwargs: Any) -> str:
            answer = await api.call(method, path.format(order_id), who, **kwargs)
            return detail(answer, status, "not-found").replace(order_id, "<id>")

        return ask

    for path, method, body in [
        ("/v1/orders/{}", "GET", None),
        ("/v1/orders/{}/cancellation", "POST", {"reason": "no"}),
    ]:
        theirs = await same_words(path, oid)("RSL-077", method, json=body)
        nobodys = await same_words(path, unknown)("RSL-077", method, json=body)
        assert theirs == nobodys and "not found" in theirs
    other = await api.call("GET", "/v1/licenses", "RSL-077", params={"domain": CONTOSO})
    assert (other.status_code, other.json()) == (200, [])
    assert len((await api.call("GET", "/v1/licenses", "ops")).json()) == 1
    assert (await api.call("GET", f"/v1/orders/{oid}", "ops")).json()["stage"] == "ACTIVE"

    # The same order id from another reseller: refused, saying only that the id is taken.
    taken = await api.call(
        "POST",
        "/v1/orders",
        "RSL-077",
        json=order | {"reseller": order["reseller"] | {"id": "RSL-077"}},
    )
    reason = detail(taken, 409, "order-conflict")
    assert f"order id {oid} is already used for another order" in reason
    assert "ACTIVE" not in reason and "recorded" not in reason
    # Its own reseller, with other content: the registry's reason, with the date and stage.
    changed = await api.call(
        "POST",
        "/v1/orders",
        "RSL-042",
        json=order | {"items": [order["items"][0] | {"quantity": 9}]},
    )
    assert "already submitted with different content" in detail(changed, 409, "order-conflict")
    assert "now ACTIVE" in changed.json()["detail"] and "new order id" in changed.json()["detail"]
    # An order for another reseller than the key's: 403, nothing starts.
    foreign = await api.call(
        "POST", "/v1/orders", "RSL-042", json=order_json("order-link-invite.json")
    )
    assert "acts for reseller RSL-042" in detail(foreign, 403, "forbidden")
    assert stack.stats()["orders_created"] == 1


async def test_a_link_order_activates_once_ops_confirm_the_partner_acceptance(
    stack: Stack, api: Api
) -> None:
    order = order_json("order-link-invite.json")
    oid = order["order_id"]
    assert (await api.call("POST", "/v1/orders", "RSL-077", json=order)).status_code == 202
    handle = stack.env.client.get_workflow_handle_for(LicenseOrderWorkflow.run, f"order-{oid}")
    await stack.first_task_done(handle)
    await stack.env.sleep(timedelta(days=1))
    waiting = (await api.call("GET", f"/v1/orders/{oid}", "RSL-077")).json()
    assert waiting["stage"] == "AWAITING_PARTNER_ACCEPTANCE"
    assert waiting["acceptance_deadline"] is not None

    by_reseller = await api.call("POST", f"/v1/orders/{oid}/partner-acceptance", "RSL-077")
    assert "only ops do this" in detail(by_reseller, 403, "forbidden")
    accepted = await api.call(
        "POST", f"/v1/orders/{oid}/partner-acceptance", "ops", json={"note": "por teléfono"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["stage"] == "AWAITING_PARTNER_ACCEPTANCE"  # it moves on from here

    assert (await stack.settle(handle)).stage.value == "ACTIVE"
    assert (await api.call("GET", f"/v1/orders/{oid}", "RSL-077")).json()["stage"] == "ACTIVE"
    licenses = (
        await api.call("GET", "/v1/licenses", "RSL-077", params={"domain": FABRIKAM})
    ).json()
    assert [lic["quantity"] for lic in licenses] == [40]
    again = await api.call("POST", f"/v1/orders/{oid}/partner-acceptance", "ops")
    assert "already ACTIVE: nothing left to accept" in detail(again, 409, "refused")


async def test_cancelling_a_waiting_order_then_one_placed_already(stack: Stack, api: Api) -> None:
    waiting = order_json("order-link-invite.json")
    placed = order_json("order-link-ours.json")
    for order in (waiting, placed):
        answer = await api.call("POST", "/v1/orders", order["reseller"]["id"], json=order)
        assert answer.status_code == 202
    await settle(stack, placed["order_id"])
    handle = stack.env.client.get_workflow_handle_for(
        LicenseOrderWorkflow.run, f"order-{waiting['order_id']}"
    )
    await stack.first_task_done(handle)
    await stack.env.sleep(timedelta(days=1))

    cancelled = await api.call(
        "POST",
        f"/v1/orders/{waiting['order_id']}/cancellation",
        "RSL-077",
        json={"reason": "el cliente desistió"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancel_reason"] == "el cliente desistió"
    assert (await stack.settle(handle)).stage.value == "CANCELLED"

    too_late = await api.call(
        "POST",
        f"/v1/orders/{placed['order_id']}/cancellation",
        placed["reseller"]["id"],
        json={"reason": "demasiado tarde"},
    )
    reason = detail(too_late, 409, "refused")
    assert "already ACTIVE" in reason and "cancel its subscriptions within 168 h" in reason
    no_reason = await api.call(
        "POST", f"/v1/orders/{placed['order_id']}/cancellation", "ops", json={}
    )
    assert detail(no_reason, 422, "invalid-input")
    assert no_reason.json()["errors"] == [{"field": "reason", "rule": "required, but missing"}]
    assert stack.stats()["orders_created"] == 1


async def test_an_invalid_order_is_422_naming_each_field_and_nothing_starts(
    stack: Stack, api: Api
) -> None:
    order = order_json("order-create.json")
    order["items"][0]["quantity"] = "10"
    order["customer"]["address"]["state"] = "Texas"
    del order["customer"]["contact"]["email"]
    order["colour"] = "blue"

    answer = await api.call("POST", "/v1/orders", "RSL-042", json=order)

    reason = detail(answer, 422, "invalid-input")
    fields = {error["field"]: error["rule"] for error in answer.json()["errors"]}
    assert set(fields) == {
        "items.0.quantity",
        "customer.address.state",
        "customer.contact.email",
        "colour",
    }
    assert fields["items.0.quantity"].startswith("must be a whole number between 1 and 10000")
    assert fields["customer.contact.email"] == "required, but missing"
    assert fields["customer.address.state"].startswith("must be one of Mexico's 32 states")
    assert fields["customer.address.state"].endswith("(got 'Texas')")
    assert fields["colour"].startswith("not a field of the order")
    assert "nothing was done" in reason
    not_json = await api.call(
        "POST",
        "/v1/orders",
        "RSL-042",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert detail(not_json, 422, "invalid-input").startswith(
        "invalid input, nothing was done: order:"
    )
    assert not_json.json()["errors"][0]["rule"].startswith("not valid JSON")

    never_started = stack.env.client.get_workflow_handle(f"order-{order['order_id']}")
    with pytest.raises(RPCError) as missing:
        await never_started.describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert stack.registry.get_order(order["order_id"]) is None
    assert stack.stats()["customers_created"] == 0
