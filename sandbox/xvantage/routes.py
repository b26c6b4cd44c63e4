"""The Xvantage face's HTTP routes: Ingram's token, vendorrequiredinfo, v7 orders, order search
and details (each request checked against the SDK's models and Ingram's headers), and the
face's /sandbox/xvantage controls."""

from __future__ import annotations

import copy
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from xi.sdk.resellers.models import (
    OrderCreateV7Request,
    VendorRequiredInfoRequest,
    VendorRequiredInforesponseInner,
)

from sandbox.state import SandboxError
from sandbox.xvantage import views
from sandbox.xvantage.face import XvantageFace
from sandbox.xvantage.shapes import TOKEN_PATH, answer, vendor_required_info

M = TypeVar("M", bound=BaseModel)


class MarketplaceChange(BaseModel):
    """POST /sandbox/xvantage/marketplace/subscriptions/{id}: what ops change by hand in
    Ingram's marketplace (status suspended | active | deleted, quantity, autoRenewEnabled)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["suspended", "active", "deleted"] | None = None
    quantity: int | None = None
    autoRenewEnabled: bool | None = None  # noqa: N815 - Partner Center's field name


def _headers_problem(request: Request, *, sender_required: bool) -> str | None:
    headers = request.headers
    checks = [
        ("IM-CustomerNumber", 10, True),
        ("IM-CountryCode", 2, True),
        ("IM-CorrelationID", 32, True),
        ("IM-SenderID", 32, sender_required),
    ]
    for name, limit, required in checks:
        value = headers.get(name)
        if value is None:
            if required:
                return f"{name} is required"
        elif not value or len(value) > limit:
            return f"{name} must be 1-{limit} characters"
    return None


def router(face: XvantageFace) -> APIRouter:
    api = APIRouter()
    state = face.state

    async def _body(request: Request, model: type[M]) -> M:
        try:
            return model.model_validate(await request.json())
        except (ValueError, ValidationError) as err:
            raise SandboxError(400, "/errors/validation-failed", f"Invalid body: {err}") from None

    def _check_headers(request: Request, *, sender_required: bool = False) -> None:
        if (problem := _headers_problem(request, sender_required=sender_required)) is not None:
            raise SandboxError(400, "/errors/validation-failed", problem)

    @api.post(TOKEN_PATH)
    async def token_form(request: Request) -> dict[str, Any]:
        # application/x-www-form-urlencoded, parsed here (no multipart dependency for this).
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            raise SandboxError(400, "unsupported_grant_type", "use client_credentials")
        return face.issue_token(form.get("client_id"), form.get("client_secret"))

    @api.get(TOKEN_PATH)
    async def token_query(
        grant_type: str = Query(), client_id: str = Query(), client_secret: str = Query()
    ) -> dict[str, Any]:
        """The spec's (and SDK's) form: credentials in the query string."""
        if grant_type != "client_credentials":
            raise SandboxError(400, "unsupported_grant_type", "use client_credentials")
        return face.issue_token(client_id, client_secret)

    @api.post("/resellers/v7/vendorrequiredinfo")
    async def vendorrequiredinfo(request: Request) -> list[dict[str, Any]]:
        _check_headers(request, sender_required=True)
        body = await _body(request, VendorRequiredInfoRequest)
        return [
            answer(
                VendorRequiredInforesponseInner,
                vendor_required_info(p.vendor_part_number or p.plan_id or ""),
            )
            for p in body.products or []
        ]

    @api.post("/resellers/v7/orders")
    async def create_order(request: Request) -> JSONResponse:
        _check_headers(request)
        body = await _body(request, OrderCreateV7Request)
        correlation = request.headers["IM-CorrelationID"]
        key = f"POST {request.url.path} {correlation}"
        face.process_due()
        with state.lock:
            if (stored := state.replay(key)) is not None:
                return JSONResponse(stored["body"], status_code=stored["status"])
            answer = face.submit(body, correlation)
            state.remember(key, 200, answer)
            state.save()
        return JSONResponse(answer)

    @api.get("/resellers/v6/orders/search")
    async def search(
        request: Request,
        customerOrderNumber: str | None = None,  # noqa: N803 - Ingram's query names
        endCustomerOrderNumber: str | None = None,  # noqa: N803
        ingramOrderNumber: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        _check_headers(request)
        return views.search(
            face,
            {
                "customerOrderNumber": customerOrderNumber or "",
                "endCustomerOrderNumber": endCustomerOrderNumber or "",
                "ingramOrderNumber": ingramOrderNumber or "",
            },
        )

    @api.get("/resellers/v6.1/orders/{ordernumber}")
    async def details(request: Request, ordernumber: str) -> dict[str, Any]:
        _check_headers(request)
        return views.details(face, ordernumber)

    @api.post("/sandbox/xvantage/expire-tokens")
    async def expire_tokens() -> dict[str, int]:
        """Every token issued so far stops working now (a token expiring mid-run)."""
        return {"expired": face.expire_tokens()}

    @api.post("/sandbox/xvantage/process-now")
    async def process_now() -> dict[str, int]:
        """Process every submitted v7 order now, whatever the delay (tests, demos)."""
        return {"processed": face.process_due(force=True)}

    @api.post("/sandbox/xvantage/marketplace/subscriptions/{subscription_id}")
    async def marketplace(subscription_id: str, body: MarketplaceChange) -> dict[str, Any]:
        """Ops change a subscription by hand in Ingram's marketplace (no XI API does it)."""
        return face.marketplace_change(subscription_id, body.model_dump(exclude_none=True))

    @api.get("/sandbox/xvantage")
    async def summary() -> dict[str, Any]:
        face.process_due()
        with state.lock:
            return {
                "tokens_issued": face.tokens_issued,
                "requests": copy.deepcopy(list(face.world["requests"].values())),
                "orders": copy.deepcopy(list(face.world["orders"].values())),
            }

    return api
