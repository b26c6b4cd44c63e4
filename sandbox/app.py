"""A local Partner Center stand-in: the v1 REST shapes the client uses, plus /sandbox controls.

It behaves the way the orchestration must cope with: bearer auth, MS-RequestId idempotency
(a replay answers the stored first response), 409 for a taken domain, pending provisioning that
completes after a delay, and injectable faults (429 + Retry-After, 5xx) for retry tests.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.state import Fault, SandboxError, SandboxState

# Paths that are Partner Center API (auth, faults, idempotency apply); /sandbox/* are controls.
API_PREFIX = "/v1/"


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
    status: str


class FaultBody(BaseModel):
    method: str | None = None
    path_prefix: str = Field(default=API_PREFIX, pattern=r"^/")
    status: int = Field(ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    times: int = Field(default=1, ge=1)
    code: str | None = None
    description: str | None = None


def _error(status: int, code: str, description: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "description": description, "data": [], "source": "PartnerFD"},
        status_code=status,
        headers=headers or None,
    )


def create_app(
    state_file: Path | None = None,
    provisioning_delay_seconds: float = 0.0,
    token: str = "sandbox-token",
    *,
    partner_tenant_id: str = "00000000-0000-0000-0000-00000000a5e0",
    enforce_relationship: bool = False,
) -> FastAPI:
    """Build the sandbox app; the world is loaded from `state_file` when it exists."""
    state = SandboxState(
        state_file,
        provisioning_delay_seconds=provisioning_delay_seconds,
        partner_tenant_id=partner_tenant_id,
        enforce_relationship=enforce_relationship,
    )
    app = FastAPI(title="Partner Center sandbox", docs_url="/sandbox/docs", redoc_url=None)
    app.state.sandbox = state
    expected_auth = f"Bearer {token}".encode()

    @app.exception_handler(SandboxError)
    async def _sandbox_error(_: Request, exc: SandboxError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in err["loc"][1:]) for err in exc.errors())
        return _error(400, "InvalidInput", f"The request is invalid: {fields or 'body'}.")

    @app.middleware("http")
    async def _gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Auth first, then injected faults: both before any side effect."""
        path = request.url.path
        if not path.startswith(API_PREFIX):
            return await call_next(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected_auth):
            return _error(401, "Unauthorized", "The bearer token is missing or invalid.")
        fault = state.take_fault(request.method, path)
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _error(
                fault.status,
                fault.code or str(fault.status),
                fault.description or "Injected sandbox fault.",
                **headers,
            )
        response = await call_next(request)
        if cid := request.headers.get("MS-CorrelationId"):
            response.headers["MS-CorrelationId"] = cid
        return response

    def idempotent_write(request: Request, op: Callable[[], tuple[int, Any]]) -> JSONResponse:
        """Run a write once per (method, path, MS-RequestId); repeats get the first answer.

        Only successes are remembered, so a refused request can be retried after the cause is
        fixed. Side effect, replay record and persistence happen under one lock.
        """
        request_id = request.headers.get("MS-RequestId")
        key = f"{request.method} {request.url.path} {request_id}" if request_id else None
        with state.lock:
            if key is not None and (stored := state.replay(key)) is not None:
                return JSONResponse(stored["body"], status_code=stored["status"])
            status, body = op()
            if key is not None:
                state.remember(key, status, body)
            state.save()
        return JSONResponse(body, status_code=status)

    # -- Partner Center v1 -----------------------------------------------------------------------

    @app.head("/v1/domains/{domain}")
    async def domain_exists(domain: str) -> Response:
        return Response(status_code=200 if state.domain_taken(domain) else 404)

    @app.get("/v1/customers")
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
        items = state.find_customers(field, value, size)
        return {
            "totalCount": len(items),
            "items": items,
            "links": {},
            "attributes": {"objectType": "Collection"},
        }

    @app.post("/v1/customers")
    async def create_customer(request: Request, body: NewCustomerBody) -> JSONResponse:
        billing = body.billingProfile.model_dump(exclude_none=True)
        return idempotent_write(
            request,
            lambda: (
                201,
                state.create_customer(
                    body.companyProfile.domain, billing, body.associatedPartnerId
                ),
            ),
        )

    @app.get("/v1/customers/relationshiprequests")
    async def relationship_request() -> dict[str, Any]:
        return {"url": state.relationship_link(), "attributes": {"objectType": "Request"}}

    @app.get("/v1/customers/{tenant_id}")
    async def get_customer(tenant_id: str) -> dict[str, Any]:
        with state.lock:
            return dict(state.get_customer(tenant_id))

    @app.post("/v1/customers/{tenant_id}/orders")
    async def create_order(request: Request, tenant_id: str, body: NewOrderBody) -> JSONResponse:
        items = [item.model_dump() for item in body.lineItems]
        return idempotent_write(request, lambda: (201, state.place_order(tenant_id, items)))

    @app.get("/v1/customers/{tenant_id}/orders/{order_id}")
    async def get_order(tenant_id: str, order_id: str) -> dict[str, Any]:
        return state.get_order(tenant_id, order_id)

    @app.get("/v1/customers/{tenant_id}/subscriptions")
    async def list_subscriptions(tenant_id: str, order_id: str | None = None) -> dict[str, Any]:
        items = state.list_subscriptions(tenant_id, order_id)
        return {
            "totalCount": len(items),
            "items": items,
            "links": {},
            "attributes": {"objectType": "Collection"},
        }

    @app.get("/v1/customers/{tenant_id}/subscriptions/{subscription_id}")
    async def get_subscription(tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return state.get_subscription(tenant_id, subscription_id)

    @app.patch("/v1/customers/{tenant_id}/subscriptions/{subscription_id}")
    async def patch_subscription(
        request: Request, tenant_id: str, subscription_id: str, body: SubscriptionPatch
    ) -> JSONResponse:
        status = body.status.lower()
        return idempotent_write(
            request,
            lambda: (200, state.set_subscription_status(tenant_id, subscription_id, status)),
        )

    @app.get("/v1/customers/{tenant_id}/subscriptions/{subscription_id}/provisioningstatus")
    async def provisioning_status(tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return state.provisioning_status(tenant_id, subscription_id)

    # -- sandbox controls (not Partner Center) ---------------------------------------------------

    @app.get("/sandbox/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/sandbox/stats")
    async def stats() -> dict[str, int]:
        return state.stats()

    @app.post("/sandbox/customers/{domain}/accept")
    async def accept(domain: str) -> dict[str, Any]:
        """Simulate the client's Global Admin accepting us (and the distributor) as partners."""
        return state.accept_relationship(domain)

    @app.post("/sandbox/faults", status_code=201)
    async def add_fault(body: FaultBody) -> dict[str, Any]:
        state.add_fault(Fault(**body.model_dump()))
        return body.model_dump()

    @app.post("/sandbox/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    return app
