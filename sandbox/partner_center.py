"""The sandbox's Partner Center face: the v1 REST shapes the PartnerCenterClient uses.

Writes are idempotent on MS-RequestId (a replay answers the stored first response). New
Commerce purchases go through carts and their checkout (sandbox/commerce.py); the legacy
order API is kept, but its offerIds must be current catalog items too. A subscription PATCH
must carry the ETag it was read with in If-Match (428 without it; 412, code 2055, when the
subscription changed since). Every call must name MS-Contract-Version (checked by the gate in
app.py, with auth and faults).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.commerce import Commerce, address_problems, validate_address
from sandbox.state import SandboxError, SandboxState

_COLLECTION = {"objectType": "Collection"}


class _Body(BaseModel):
    """Request bodies, with Partner Center's own camelCase field names."""

    model_config = ConfigDict(extra="allow")


class DefaultAddress(_Body):
    country: str = Field(min_length=2, max_length=2)
    city: str = Field(min_length=1)
    state: str = Field(min_length=1)
    addressLine1: str = Field(min_length=1)
    addressLine2: str | None = None
    postalCode: str = Field(min_length=1)
    firstName: str = Field(min_length=1)
    lastName: str = Field(min_length=1)


class BillingProfile(_Body):
    email: str = Field(min_length=3)
    culture: str = "es-MX"
    language: str = Field(default="es", min_length=2, max_length=2)
    companyName: str = Field(min_length=1)
    defaultAddress: DefaultAddress


class CompanyProfile(_Body):
    domain: str = Field(min_length=1)


class NewCustomerBody(_Body):
    billingProfile: BillingProfile
    companyProfile: CompanyProfile
    associatedPartnerId: str | None = None


class LineItem(_Body):
    lineItemNumber: int = Field(ge=0)
    offerId: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    termDuration: str = Field(pattern=r"^P(1M|1Y|3Y)$")
    billingCycle: str = Field(pattern=r"^(monthly|annual|triennial)$")
    friendlyName: str | None = None


class NewOrderBody(_Body):
    referenceCustomerId: str | None = None
    lineItems: list[LineItem] = Field(min_length=1)


class SubscriptionPatch(_Body):
    """PATCH body: Partner Center's full subscription resource; the fields read are these.

    No range rules here: a quantity below one must meet Partner Center's own refusal (2002),
    not a generic validation error.
    """

    status: str | None = None
    quantity: int | None = None
    autoRenewEnabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("status", "quantity", "autoRenewEnabled")
            if name in self.model_fields_set and getattr(self, name) is not None
        }


def collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"totalCount": len(items), "items": items, "links": {}, "attributes": _COLLECTION}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SandboxError(400, "800002", "Invalid request input: a JSON object is required.")
    return body


def router(state: SandboxState, commerce: Commerce) -> APIRouter:
    api = APIRouter()

    def idempotent_write(
        request: Request, request_id: str | None, op: Callable[[], tuple[int, Any]]
    ) -> JSONResponse:
        """Run a write once per (method, path, MS-RequestId); repeats get the first answer.

        Only successes are remembered, so a refused request can be retried after the cause is
        fixed. Side effect, replay record and persistence happen under one lock.
        """
        key = f"{request.method} {request.url.path} {request_id}" if request_id else None
        with state.lock:
            if key is not None and (stored := state.replay(key)) is not None:
                return JSONResponse(stored["body"], status_code=stored["status"])
            status, body = op()
            if key is not None:
                state.remember(key, status, body)
            state.save()
        return JSONResponse(body, status_code=status)

    @api.head("/v1/domains/{domain}")
    async def domain_exists(domain: str) -> Response:
        return Response(status_code=200 if state.domain_taken(domain) else 404)

    @api.post("/v1/validations/address")
    async def address_validation(request: Request) -> dict[str, Any]:
        return validate_address(await _json_object(request))

    @api.get("/v1/customers")
    async def list_customers(
        size: int = Query(default=200, ge=1, le=500), filter: str | None = None
    ) -> dict[str, Any]:
        field, value = "domain", ""
        if filter:
            try:
                spec = json.loads(filter)
                field = str(spec["Field"]).lower()
                value = str(spec["Value"])
                operator = str(spec.get("Operator", "starts_with")).lower()
            except (ValueError, KeyError, TypeError):
                raise SandboxError(400, "InvalidFilter", "The filter is not valid.") from None
            if field not in ("domain", "companyname") or operator != "starts_with":
                raise SandboxError(
                    400, "InvalidFilter", "Only Domain/CompanyName with starts_with."
                )
        return collection(state.find_customers(field, value, size))

    @api.post("/v1/customers")
    async def create_customer(request: Request, body: NewCustomerBody) -> JSONResponse:
        billing = body.billingProfile.model_dump(exclude_none=True)
        if problems := address_problems(billing["defaultAddress"]):
            raise SandboxError(
                400,
                "InvalidAddress",
                f"The address is not valid: {', '.join(problems)}.",
            )
        request_id = request.headers.get("MS-RequestId")
        return idempotent_write(
            request,
            request_id,
            lambda: (
                201,
                state.create_customer(
                    body.companyProfile.domain, billing, body.associatedPartnerId, request_id
                ),
            ),
        )

    @api.get("/v1/customers/relationshiprequests")
    async def relationship_request() -> dict[str, Any]:
        return {"url": state.relationship_link(), "attributes": {"objectType": "Request"}}

    @api.get("/v1/customers/{tenant_id}")
    async def get_customer(tenant_id: str) -> dict[str, Any]:
        with state.lock:
            return dict(state.get_customer(tenant_id))

    @api.get("/v1/customers/{tenant_id}/profiles/billing")
    async def billing_profile(tenant_id: str) -> dict[str, Any]:
        return commerce.billing_profile(tenant_id)

    # -- the Microsoft Customer Agreement -------------------------------------------------------

    @api.get("/v1/agreements")
    async def agreement_metadata(agreementType: str | None = None) -> dict[str, Any]:  # noqa: N803
        return commerce.agreement_metadata(agreementType)

    @api.get("/v1/customers/{tenant_id}/agreements")
    async def customer_agreements(
        tenant_id: str,
        agreementType: str | None = None,  # noqa: N803 - Partner Center's query name
    ) -> dict[str, Any]:
        return commerce.customer_agreements(tenant_id, agreementType)

    @api.post("/v1/customers/{tenant_id}/agreements")
    async def confirm_agreement(request: Request, tenant_id: str) -> JSONResponse:
        body = await _json_object(request)
        return idempotent_write(
            request,
            request.headers.get("MS-RequestId"),
            lambda: (201, commerce.confirm_agreement(tenant_id, body)),
        )

    # -- New Commerce: catalog, carts, checkout -------------------------------------------------

    @api.get("/v1/customers/{tenant_id}/products/{product_id}/skus/{sku_id}/availabilities")
    async def availabilities(tenant_id: str, product_id: str, sku_id: str) -> dict[str, Any]:
        return commerce.availabilities(tenant_id, product_id, sku_id)

    @api.post("/v1/customers/{tenant_id}/carts")
    async def create_cart(request: Request, tenant_id: str) -> JSONResponse:
        body = await _json_object(request)
        return idempotent_write(
            request,
            request.headers.get("MS-RequestId"),
            lambda: (201, commerce.create_cart(tenant_id, body)),
        )

    @api.post("/v1/customers/{tenant_id}/carts/{cart_id}/checkout")
    async def checkout(request: Request, tenant_id: str, cart_id: str) -> JSONResponse:
        request_id = request.headers.get("MS-RequestId")
        return idempotent_write(
            request, request_id, lambda: (201, commerce.checkout(tenant_id, cart_id, request_id))
        )

    # -- orders (the legacy API, and reads) -----------------------------------------------------

    @api.post("/v1/customers/{tenant_id}/orders")
    async def create_order(request: Request, tenant_id: str, body: NewOrderBody) -> JSONResponse:
        items = [item.model_dump() for item in body.lineItems]
        request_id = request.headers.get("MS-RequestId")

        def place() -> tuple[int, Any]:
            commerce.check_order_items(items)
            return 201, state.place_order(tenant_id, items, request_id)

        return idempotent_write(request, request_id, place)

    @api.get("/v1/customers/{tenant_id}/orders")
    async def list_orders(tenant_id: str) -> dict[str, Any]:
        return collection(state.list_orders(tenant_id))

    @api.get("/v1/customers/{tenant_id}/orders/{order_id}")
    async def get_order(tenant_id: str, order_id: str) -> dict[str, Any]:
        return state.get_order(tenant_id, order_id)

    # -- subscriptions --------------------------------------------------------------------------

    @api.get("/v1/customers/{tenant_id}/subscriptions")
    async def list_subscriptions(tenant_id: str, order_id: str | None = None) -> dict[str, Any]:
        return collection(state.list_subscriptions(tenant_id, order_id))

    @api.get("/v1/customers/{tenant_id}/subscriptions/{subscription_id}")
    async def get_subscription(tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return state.get_subscription(tenant_id, subscription_id)

    @api.patch("/v1/customers/{tenant_id}/subscriptions/{subscription_id}")
    async def patch_subscription(
        request: Request, tenant_id: str, subscription_id: str, body: SubscriptionPatch
    ) -> JSONResponse:
        changes = body.changes()
        if_match = request.headers.get("If-Match")

        def update() -> tuple[int, Any]:
            current = state.get_subscription(tenant_id, subscription_id)
            if not if_match:
                raise SandboxError(
                    428,
                    "PreconditionRequired",
                    "If-Match is required: send the subscription's ETag (attributes.etag).",
                )
            if if_match != current["attributes"]["etag"]:
                raise SandboxError(412, "2055", "Etag is no longer valid.")
            return 200, state.update_subscription(tenant_id, subscription_id, changes)

        return idempotent_write(request, request.headers.get("MS-RequestId"), update)

    @api.get("/v1/customers/{tenant_id}/subscriptions/{subscription_id}/provisioningstatus")
    async def provisioning_status(tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return state.provisioning_status(tenant_id, subscription_id)

    return api


__all__ = ["router"]
