"""Orders and licenses over HTTP, on the client functions the CLI uses (api/orders.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from api import orders as order_api
from api.subscriptions import SubscriptionInputError, check_domain
from csp_core.orders.models import OrderValidationError, parse_order
from csp_core.orders.provisioning import OrderStatus
from csp_core.registry import LicenseRow
from http_api.auth import Caller, authenticated, ops_only
from http_api.backends import Backends, backends
from http_api.idempotency import REPLAYED
from http_api.problems import Problem, invalid

router = APIRouter(prefix="/v1", tags=["orders"])

# A 202's body never changes for one order: the same submission gets the same answer.
SUBMIT_BODY = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "workflow_id": {"type": "string"},
        "status_url": {"type": "string"},
    },
}


class OrderView(OrderStatus):
    """Where an order stands: its workflow's answer, or (`source: registry`) what the registry
    remembers once the workflow's history is gone."""

    source: str = Field(description="workflow | registry")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=500, description="Why it is cancelled.")]


class AcceptanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str | None, Field(max_length=500, description="Who confirmed it, how.")] = None


class LicenseView(BaseModel):
    domain: str
    tenant_id: str
    subscription_id: str
    reseller_id: str = Field(description="The reseller whose license it is.")
    sku: str
    product_name: str
    quantity: int
    term: str
    billing_cycle: str
    status: str
    order_id: str | None
    activated_at: str | None

    @classmethod
    def of(cls, row: LicenseRow) -> LicenseView:
        data = row.model_dump(mode="json")
        data["reseller_id"] = row.license_reseller_id
        return cls.model_validate(data, strict=False)


COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such order (or another reseller's)."},
    409: {"description": "Refused: the reason and the way out."},
}


def status_url(order_id: str) -> str:
    return f"/v1/orders/{order_id}"


@router.post(
    "/orders",
    status_code=202,
    summary="Submit an order (idempotent by order id)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
        }
    },
    responses={
        202: {"content": {"application/json": {"schema": SUBMIT_BODY}}},
        403: {"description": "The order names another reseller than the key's."},
        409: {"description": "The order id was used for another order."},
        422: {"description": "Invalid order: each field and its rule; nothing started."},
    },
)
async def submit_order(
    request: Request,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> JSONResponse:
    """Validates the order (422 naming each field and rule; nothing starts) and starts its
    workflow. The same order again gets the same answer (with `Idempotent-Replayed: true`);
    the same order id with other content is refused (409)."""
    try:
        order = parse_order(await request.body(), found.settings.order_countries)
    except OrderValidationError as err:
        raise invalid(err.problems) from None
    if not caller.sees(order.reseller.id):
        raise Problem(
            403,
            "forbidden",
            f"this key acts for reseller {caller.reseller_id}: it submits that reseller's orders "
            f"only (reseller.id is {order.reseller.id})",
        )
    client = await found.client()
    try:
        result = await order_api.submit_order(client, found.registry, order, found.settings)
    except order_api.OrderRefused as err:
        detail = str(err)
        owner = await order_api.order_reseller(client, found.registry, order.order_id)
        if not caller.sees(owner):  # another reseller's order: say only that the id is taken
            detail = (
                f"order id {order.order_id} is already used for another order; an order id "
                "cannot be reused: submit this order under a new order id"
            )
        raise Problem(409, "order-conflict", detail) from None
    location = status_url(order.order_id)
    headers = {"Location": location}
    if not result.created:
        headers[REPLAYED] = "true"
    body = {"order_id": order.order_id, "workflow_id": result.workflow_id, "status_url": location}
    return JSONResponse(body, status_code=202, headers=headers)


@router.get(
    "/orders/{order_id}",
    response_model=OrderView,
    summary="Where an order stands",
    responses={404: {"description": "No such order (or another reseller's)."}},
)
async def get_order(
    order_id: str,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> OrderView:
    client = await found.client()
    try:
        status = await order_api.order_status(client, order_id)
        source = "workflow"
    except order_api.OrderNotFound as err:
        recorded = await asyncio.to_thread(found.registry.get_order, order_id)
        if recorded is None:
            raise Problem(404, "not-found", str(err)) from None
        status, source = order_api.recorded_status(recorded), "registry"
    except order_api.OrderRefused as err:  # the workflow did not answer: whose is it?
        if not caller.sees(await order_api.order_reseller(client, found.registry, order_id)):
            raise _not_found(client, order_id, caller) from None
        raise Problem(404, "not-found", str(err)) from None
    if not caller.sees(status.reseller_id):
        raise _not_found(client, order_id, caller)
    return OrderView(**status.model_dump(), source=source)


@router.post(
    "/orders/{order_id}/partner-acceptance",
    response_model=OrderStatus,
    summary="Confirm the client's partner acceptance (ops)",
    responses=COMMAND_RESPONSES | {403: {"description": "Not an ops key."}},
)
async def accept_partner(
    order_id: str,
    answer: AcceptanceRequest | None = Body(None),
    caller: Caller = Depends(ops_only),
    found: Backends = Depends(backends),
) -> OrderStatus:
    """Ops only: a reseller confirming its own client's acceptance could take over a tenant
    another reseller's client never accepted it for. 409 when the order is not waiting."""
    note = (answer.note if answer else None) or f"confirmed over the API (key {caller.key_id})"
    return await _command(
        found, caller, order_id, "has nothing left to accept", order_api.accept_partner, note
    )


@router.post(
    "/orders/{order_id}/cancellation",
    response_model=OrderStatus,
    summary="Cancel an order not placed yet",
    responses=COMMAND_RESPONSES,
)
async def cancel_order(
    order_id: str,
    cancel: CancelRequest,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> OrderStatus:
    """The Update's answer: 200 with where the order stands, or 409 with the reason and the
    way out (once placed, its subscriptions are cancelled within 168 h instead)."""
    return await _command(
        found,
        caller,
        order_id,
        "can no longer be cancelled here",
        order_api.cancel_order,
        cancel.reason,
    )


async def _command(
    found: Backends, caller: Caller, order_id: str, when_closed: str, command: Any, arg: str
) -> OrderStatus:
    client = await found.client()
    if not caller.sees(await order_api.order_reseller(client, found.registry, order_id)):
        raise _not_found(client, order_id, caller)
    try:
        return await command(client, order_id, arg)
    except order_api.OrderNotFound as err:
        recorded = await asyncio.to_thread(found.registry.get_order, order_id)
        if recorded is None:
            raise Problem(404, "not-found", str(err)) from None
        raise Problem(409, "refused", order_api.closed_refusal(recorded, when_closed)) from None
    except order_api.OrderRefused as err:
        raise Problem(409, "refused", str(err), code=err.code) from None


def _not_found(client: Client, order_id: str, caller: Caller) -> Problem:
    """Another reseller's order, answered as an unknown one (the log says what it is)."""
    return Problem(
        404,
        "not-found",
        str(order_api.order_not_found(client, order_id)),
        log_reason=f"an order of another reseller (the key acts for {caller.reseller_id})",
    )


@router.get(
    "/licenses",
    response_model=list[LicenseView],
    tags=["licenses"],
    summary="Licenses per tenant domain",
)
async def list_licenses(
    domain: Annotated[
        str | None, Query(description="Only this tenant, <prefix>.onmicrosoft.com.")
    ] = None,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> list[LicenseView]:
    """A reseller's key lists that reseller's licenses only."""
    if domain is not None:
        try:
            domain = check_domain(domain, "domain")
        except SubscriptionInputError as err:
            raise invalid([str(err)]) from None
    rows = await asyncio.to_thread(found.registry.list_licenses, domain, caller.reseller_id)
    return [LicenseView.of(row) for row in rows]
