"""The provider sandbox: Partner Center's face (sandbox/partner_center.py, with Azure AD's
sign-in in sandbox/login.py) and Ingram's Xvantage face (sandbox/xvantage.py) on one world,
plus /sandbox controls.

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

Partner Center's face takes the static token (`token`, the sandbox provider's) or an access
token its sign-in face issued (App+User, PROVIDER=partner_center), and refuses a call without
MS-Contract-Version. GET /sandbox/requests lists what the API faces received (contract tests);
POST /sandbox/catalog/rotate makes a SKU's availability stale (400019 at checkout).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import events_routes, login, partner_center, xvantage
from sandbox.commerce import Commerce
from sandbox.events import EventSender
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
    # Has its client accepted the Microsoft Customer Agreement? Default: when it is ours.
    mca_accepted: bool | None = None
    # Its billing contact (Partner Center's billing profile), when it has one.
    contact_first_name: str | None = None
    contact_last_name: str | None = None
    contact_email: str | None = None

    def billing_profile(self) -> dict[str, Any]:
        if not (self.contact_first_name and self.contact_last_name and self.contact_email):
            return {}
        return {
            "email": self.contact_email,
            "companyName": self.company_name,
            "defaultAddress": {
                "firstName": self.contact_first_name,
                "lastName": self.contact_last_name,
            },
        }


class RotateBody(BaseModel):
    """POST /sandbox/catalog/rotate: republish this SKU's availabilities (PRODUCT:SKU[:...])."""

    catalog_item_id: str = Field(min_length=3)


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
    partner_center_client_id: str = "sandbox-pc-client",
    partner_center_client_secret: str = "sandbox-pc-secret",
    partner_center_refresh_token: str = "sandbox-refresh-token",
    partner_center_token_ttl_seconds: float = 3599,
    events_url: str | None = None,
    events_secret: str | None = None,
    events_public_url: str | None = None,
    events_first_delay_s: float = 1.0,
) -> FastAPI:
    """Build the sandbox app; the world is loaded from `state_file` when it exists.

    `faults` adds random faults and latency to every API call of both faces, Partner Center
    (/v1) and Xvantage (/resellers, /oauth); never to /sandbox/*. The Xvantage face processes a
    v7 order `xvantage_order_delay_seconds` after it was submitted. Partner Center's sign-in
    face accepts `partner_center_client_id`/`_secret` with `partner_center_refresh_token`.
    With `events_url`, the world's events are pushed there (sandbox/events.py), signed with
    `events_secret` (Ingram's) and a certificate served under `events_public_url`.
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
    sign_in = login.LoginFace(
        client_id=partner_center_client_id,
        client_secret=partner_center_client_secret,
        refresh_token=partner_center_refresh_token,
        token_ttl_seconds=partner_center_token_ttl_seconds,
    )
    app.state.login = sign_in
    commerce = Commerce(state)
    sender = EventSender(
        state,
        events_url,
        events_secret,
        public_url=events_public_url,
        first_delay_s=events_first_delay_s,
        tick=lambda: [sender.ingram_order_status(*done) for done in face.final_statuses()],
    )
    state.on_subscription_changed = sender.subscription_updated
    app.state.events = sender
    sender.start()
    app.add_middleware(
        _Gate,
        state=state,
        profile=app.state.fault_profile,
        expected_auth=f"Bearer {token}",
        xvantage=face,
        login=sign_in,
    )
    app.include_router(partner_center.router(state, commerce))
    app.include_router(login.router(sign_in))
    app.include_router(xvantage.router(face))
    app.include_router(events_routes.router(state, sender))

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
        return state.add_tenant(
            body.domain,
            body.company_name,
            body.relationship,
            body.mca_accepted,
            body.billing_profile(),
        )

    @app.post("/sandbox/catalog/rotate")
    async def rotate(body: RotateBody) -> dict[str, Any]:
        """Republish a SKU's availabilities: the ids known so far go stale (400019)."""
        return commerce.rotate(body.catalog_item_id)

    @app.get("/sandbox/requests")
    async def requests(face: Face | None = None, limit: int = Query(200, ge=1)) -> list[Any]:
        """What the API faces received, oldest first (the last `limit`, of `face` if given):
        method, path, query, the headers that matter (never a token) and the JSON body."""
        with state.lock:
            seen = [r for r in state.requests if face is None or r["face"] == face]
        return seen[-limit:]

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
        login: login.LoginFace,
    ) -> None:
        self.app = app
        self.state = state
        self.profile = profile
        self.expected_auth = expected_auth.encode()
        self.xvantage = xvantage
        self.login = login

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
        scheme, _, token = given.decode("latin-1").partition(" ")
        if face == "partner_center":
            # The sandbox's static token, or an App+User token of the sign-in face.
            if hmac.compare_digest(given, self.expected_auth):
                return True
            return scheme.lower() == "bearer" and self.login.check(token) is True
        if path == xvantage.TOKEN_PATH:
            return True  # the token endpoint checks the client credentials itself
        return scheme.lower() == "bearer" and self.xvantage.token_valid(token)

    async def _gate(self, face: Face, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        if face == "partner_center":
            receive = await self._record(scope, headers, receive)
        if not self._authorized(face, path, headers):
            answer = self._answer(
                face, 401, "Unauthorized", "The bearer token is missing, invalid or expired."
            )
            await answer(scope, receive, send)
            return
        if face == "partner_center" and not headers.get(b"ms-contract-version"):
            answer = self._answer(
                face, 400, "InvalidHeader", "MS-Contract-Version is required (v1)."
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

    async def _record(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Receive:
        """Note the request for GET /sandbox/requests; the body is read here and handed on."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = {
            name.decode(): headers[name].decode("latin-1")
            for name in _RECORDED_HEADERS
            if name in headers
        }
        if b"authorization" in headers:  # the scheme only: never a token
            seen["authorization"] = headers[b"authorization"].decode("latin-1").split(" ")[0]
        with self.state.lock:
            self.state.requests.append(
                {
                    "face": "partner_center",
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "headers": seen,
                    "body": body,
                }
            )
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        return replay

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


_RECORDED_HEADERS = (
    b"ms-requestid",
    b"ms-correlationid",
    b"ms-contract-version",
    b"if-match",
    b"x-locale",
    b"content-type",
)


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
