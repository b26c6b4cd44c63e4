"""A local Partner Center stand-in: the v1 REST shapes the client uses, plus /sandbox controls.

It behaves the way the orchestration must cope with: bearer auth, MS-RequestId idempotency
(a replay answers the stored first response), 409 for a taken domain, pending provisioning that
completes after a delay, and faults: one-shot ones set by tests through /sandbox/faults, and
random ones at given rates (`FaultProfile`, SANDBOX_FAULTS): 5xx and 429 + Retry-After before
any side effect, and "committed, then the response is lost" (a 502 or a dropped connection).

Subscription changes follow New Commerce: seats can be added any time while active; removing
seats or cancelling (status "deleted") only within 168 h of the purchase, the renewal or the
seats' addition, with Partner Center's refusals (800090, 900117, 2002, 2001, 800091, 2011).
Controls for them: POST /sandbox/subscriptions/{id}/backdate {"days"|"hours"|"seconds"},
/renewing {"seconds"|"calls"} (changes answer 409 meanwhile) and /renew (a new term now).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import xvantage
from sandbox.state import (
    CURRENT_FACE,
    Face,
    Fault,
    FaultKind,
    FaultProfile,
    SandboxError,
    SandboxState,
)

# Paths that are Partner Center API (auth, faults, idempotency apply); /sandbox/* are controls.
API_PREFIX = "/v1/"


def face_of(path: str) -> Face | None:
    """Which API face a path belongs to (None: a /sandbox control, never faulted)."""
    if path.startswith(API_PREFIX):
        return "partner_center"
    if path.startswith(xvantage.PREFIXES):
        return "xvantage"
    return None


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


class BackdateBody(BaseModel):
    """POST /sandbox/subscriptions/{id}/backdate: move the purchase this far into the past."""

    days: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    seconds: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _some_time(self) -> BackdateBody:
        if self.days + self.hours + self.seconds <= 0:
            raise ValueError("give days, hours or seconds greater than 0")
        return self

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, seconds=self.seconds)


class RenewingBody(BaseModel):
    """POST /sandbox/subscriptions/{id}/renewing: changes answer 409 for `seconds`, or for
    the next `calls` changes, as while Partner Center renews the subscription."""

    seconds: float | None = Field(default=None, gt=0)
    calls: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_of(self) -> RenewingBody:
        if (self.seconds is None) == (self.calls is None):
            raise ValueError("give exactly one of seconds or calls")
        return self


class FaultBody(BaseModel):
    """POST /sandbox/faults. kind "error" (default) needs `status`; kind "lost_response"
    commits the call and then answers 502 (`lost_as` "502") or drops the connection ("drop")."""

    kind: Literal["error", "lost_response"] = "error"
    method: str | None = None
    path_prefix: str = Field(default=API_PREFIX, pattern=r"^/")
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    times: int = Field(default=1, ge=1)
    code: str | None = None
    description: str | None = None
    lost_as: Literal["502", "drop"] = "502"

    @model_validator(mode="after")
    def _status_for_errors(self) -> FaultBody:
        if self.kind == "error" and self.status is None:
            raise ValueError("status is required for kind 'error'")
        return self


class NewTenantBody(BaseModel):
    """POST /sandbox/customers: a client's existing tenant, for link orders."""

    domain: str = Field(min_length=1)
    company_name: str = "Cliente de prueba SA de CV"
    relationship: Literal["none", "reseller"] = "none"


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
    faults: FaultProfile | None = None,
    xvantage_client_id: str = "sandbox-client",
    xvantage_client_secret: str = "sandbox-secret",
    xvantage_order_delay_seconds: float = 0.0,
    xvantage_token_ttl_seconds: float = 86399,
) -> FastAPI:
    """Build the sandbox app; the world is loaded from `state_file` when it exists.

    `faults` adds random faults and latency to every API call of both faces, Partner Center
    (/v1) and Xvantage (/resellers, /oauth); never to /sandbox/*. The Xvantage face processes a
    v7 order `xvantage_order_delay_seconds` after it was submitted.
    """
    state = SandboxState(
        state_file,
        provisioning_delay_seconds=provisioning_delay_seconds,
        partner_tenant_id=partner_tenant_id,
        enforce_relationship=enforce_relationship,
    )
    app = FastAPI(title="Provider sandbox", docs_url="/sandbox/docs", redoc_url=None)
    app.state.sandbox = state
    app.state.fault_profile = faults or FaultProfile()
    face = xvantage.XvantageFace(
        state,
        client_id=xvantage_client_id,
        client_secret=xvantage_client_secret,
        order_delay_seconds=xvantage_order_delay_seconds,
        token_ttl_seconds=xvantage_token_ttl_seconds,
    )
    app.state.xvantage = face
    app.add_middleware(
        _Gate,
        state=state,
        profile=app.state.fault_profile,
        expected_auth=f"Bearer {token}",
        xvantage=face,
    )
    app.include_router(xvantage.router(face))

    @app.exception_handler(SandboxError)
    async def _sandbox_error(request: Request, exc: SandboxError) -> JSONResponse:
        if face_of(request.url.path) == "xvantage":
            return xvantage.xv_error(exc.status, exc.code, exc.description)
        return _error(exc.status, exc.code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A field error names the field; a whole-body rule (model validator) says its message.
        fields = ", ".join(
            ".".join(str(p) for p in err["loc"][1:]) or str(err["msg"]) for err in exc.errors()
        )
        message = f"The request is invalid: {fields or 'body'}."
        if face_of(request.url.path) == "xvantage":
            return xvantage.xv_error(400, "/errors/validation-failed", message)
        return _error(400, "InvalidInput", message)

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
        request_id = request.headers.get("MS-RequestId")
        return idempotent_write(
            request, request_id, lambda: (201, state.place_order(tenant_id, items, request_id))
        )

    @app.get("/v1/customers/{tenant_id}/orders")
    async def list_orders(tenant_id: str) -> dict[str, Any]:
        items = state.list_orders(tenant_id)
        return {
            "totalCount": len(items),
            "items": items,
            "links": {},
            "attributes": {"objectType": "Collection"},
        }

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
        changes = body.changes()
        return idempotent_write(
            request,
            request.headers.get("MS-RequestId"),
            lambda: (200, state.update_subscription(tenant_id, subscription_id, changes)),
        )

    @app.get("/v1/customers/{tenant_id}/subscriptions/{subscription_id}/provisioningstatus")
    async def provisioning_status(tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return state.provisioning_status(tenant_id, subscription_id)

    # -- sandbox controls (not Partner Center) ---------------------------------------------------

    @app.get("/sandbox/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/sandbox/stats")
    async def stats() -> dict[str, Any]:
        """Totals, and `by_face` (partner_center, xvantage) with the same counters."""
        return state.stats()

    @app.get("/sandbox/world")
    async def world() -> dict[str, Any]:
        """Every customer and order with its origin and MS-RequestId, plus the stats."""
        return state.world_summary()

    @app.post("/sandbox/customers", status_code=201)
    async def add_tenant(body: NewTenantBody) -> dict[str, Any]:
        """Add a client's existing tenant (for link orders); not a Partner Center effect."""
        return state.add_tenant(body.domain, body.company_name, body.relationship)

    @app.post("/sandbox/customers/{domain}/accept")
    async def accept(domain: str) -> dict[str, Any]:
        """Simulate the client's Global Admin accepting us (and the distributor) as partners."""
        return state.accept_relationship(domain)

    @app.post("/sandbox/subscriptions/{subscription_id}/backdate")
    async def backdate(subscription_id: str, body: BackdateBody) -> dict[str, Any]:
        """Move a subscription's purchase into the past (its term and 168-hour windows too)."""
        return state.backdate_subscription(subscription_id, body.delta)

    @app.post("/sandbox/subscriptions/{subscription_id}/renewing")
    async def renewing(subscription_id: str, body: RenewingBody) -> dict[str, Any]:
        """Put a subscription "in renewal": its changes answer 409 for a while."""
        return state.mark_renewing(subscription_id, seconds=body.seconds, calls=body.calls)

    @app.post("/sandbox/subscriptions/{subscription_id}/renew")
    async def renew(subscription_id: str) -> dict[str, Any]:
        """Complete a renewal now: a new term and a new 168-hour window start."""
        return state.renew_subscription(subscription_id)

    @app.post("/sandbox/faults", status_code=201)
    async def add_fault(body: FaultBody) -> dict[str, Any]:
        state.add_fault(Fault(**body.model_dump()))
        return body.model_dump()

    @app.get("/sandbox/faults")
    async def fault_profile() -> dict[str, Any]:
        """The random fault rates in force (from SANDBOX_FAULTS) and the one-shot faults left."""
        profile = app.state.fault_profile
        return {
            "error_rate": profile.error_rate,
            "throttle_rate": profile.throttle_rate,
            "lost_response_rate": profile.lost_response_rate,
            "latency_ms": profile.latency_ms,
            "retry_after_s": profile.retry_after_s,
            "seed": profile.seed,
            "pending": len(state.faults),
        }

    @app.post("/sandbox/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    return app


class _Gate:
    """Pure ASGI middleware on the API paths of both faces: auth, latency, then faults, then
    the API. The face is noted for the call (stats.by_face), and errors speak its shape.

    Pure ASGI (not @app.middleware) because a lost response must let the endpoint commit and
    then either answer 502 or drop the connection after the status line: both need control of
    the raw `send`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: SandboxState,
        profile: FaultProfile,
        expected_auth: str,
        xvantage: xvantage.XvantageFace,
    ) -> None:
        self.app = app
        self.state = state
        self.profile = profile
        self.expected_auth = expected_auth.encode()
        self.xvantage = xvantage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        face = face_of(scope["path"]) if scope["type"] == "http" else None
        if face is None:
            await self.app(scope, receive, send)
            return
        marker = CURRENT_FACE.set(face)
        try:
            await self._gate(face, scope, receive, send)
        finally:
            CURRENT_FACE.reset(marker)

    def _answer(self, face: Face, status: int, code: str, text: str, **headers: str) -> Any:
        if face == "xvantage":
            return xvantage.xv_error(status, code, text, **headers)
        return _error(status, code, text, **headers)

    def _authorized(self, face: Face, path: str, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        if face == "partner_center":
            return hmac.compare_digest(given, self.expected_auth)
        if path == xvantage.TOKEN_PATH:
            return True  # the token endpoint checks the client credentials itself
        scheme, _, token = given.decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and self.xvantage.token_valid(token)

    async def _gate(self, face: Face, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        if not self._authorized(face, path, headers):
            answer = self._answer(
                face, 401, "Unauthorized", "The bearer token is missing, invalid or expired."
            )
            await answer(scope, receive, send)
            return
        if self.profile.latency_ms > 0:
            await asyncio.sleep(self.profile.latency_ms / 1000)
        lost_as: str | None = None
        fault = self.state.take_fault(method, path)
        if fault is not None and fault.kind == "error":
            extra = (
                {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            )
            assert fault.status is not None
            answer = self._answer(
                face,
                fault.status,
                fault.code or str(fault.status),
                fault.description or "Injected sandbox fault.",
                **extra,
            )
            await answer(scope, receive, send)
            return
        if fault is not None:
            lost_as = fault.lost_as
        elif (kind := self.profile.draw(method)) is not None:
            if kind == "lost_response":
                lost_as = self.profile.rng.choice(("502", "drop"))
            else:
                await self._random_fault(face, kind, scope, receive, send)
                return
        correlation = headers.get(b"ms-correlationid")
        if lost_as is None:
            await self.app(scope, receive, _with_correlation(send, correlation))
            return
        # Commit, keep the answer from the caller.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        status = held[0]["status"] if held else 500
        if status >= 300:  # nothing committed: nothing to lose, answer as is
            for message in held:
                await send(message)
            return
        self.state.count_fault("lost_response")
        if lost_as == "502":
            answer = self._answer(face, 502, "BadGateway", "The upstream connection was reset.")
            await answer(scope, receive, send)
            return
        # Dropped: the status line goes out, the body never does; returning without completing
        # makes the server close the connection (the client sees a protocol error).
        start = dict(held[0])
        await send(start)

    async def _random_fault(
        self, face: Face, kind: FaultKind, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.state.count_fault(kind)
        if kind == "throttle":
            answer = self._answer(
                face,
                429,
                "TooManyRequests",
                "Rate limit exceeded (injected).",
                **{"Retry-After": f"{self.profile.retry_after_s:g}"},
            )
        else:
            status = self.profile.rng.choice((500, 503))
            answer = self._answer(face, status, str(status), "Injected sandbox fault.")
        await answer(scope, receive, send)


def _with_correlation(send: Send, correlation: bytes | None) -> Send:
    if not correlation:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [*message.get("headers", []), (b"ms-correlationid", correlation)],
            }
        await send(message)

    return wrapped
