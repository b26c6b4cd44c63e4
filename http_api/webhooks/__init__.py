"""Providers' events in: `POST /v1/webhooks/ingram/order-status` (Ingram's order-status event,
the shape of its `POST /resellers/v1/webhooks/orderstatusevent`) and
`POST /v1/webhooks/partner-center` (Partner Center's relationship-accepted and
subscription-updated events). No API key: the signature is checked instead (signatures.py),
then the event is deduplicated (an event delivered again answers as the first time, and
signals nothing again), then api/webhooks.py tells the workflows. An event about nothing we
know is answered 200 (and logged), so the provider does not retry it forever; Temporal being
down is 503, so it does retry. Polling stays the fallback: a lost event only makes a workflow
learn the news at its next look.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from xi.sdk.resellers.models import OrderStatusAsyncNotificationRequest

from api import webhooks as dispatch
from http_api.backends import Backends, backends
from http_api.problems import Problem
from http_api.webhooks.signatures import (
    CertificateCache,
    check_fresh,
    check_ingram,
    check_partner_center,
)

log = structlog.get_logger("webhooks")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
REPLAYED = "Idempotent-Replayed"
INGRAM_SCOPE, PARTNER_CENTER_SCOPE = "webhook:ingram", "webhook:partner-center"
MAX_EVENT_BYTES = 256 * 1024


def _certificates(request: Request) -> CertificateCache:
    """Partner Center's certificates, cached for the app's life."""
    state = request.app.state
    if getattr(state, "webhook_certificates", None) is None:
        state.webhook_certificates = CertificateCache()
    return state.webhook_certificates


async def _json_body(request: Request) -> tuple[bytes, dict[str, Any]]:
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        raise Problem(422, "invalid-input", "the event is larger than 256 KiB")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Problem(422, "invalid-input", "the event is not a JSON object")
    return raw, data


async def _once(
    found: Backends, scope: str, key: str, raw: bytes, handle: Any, what: str
) -> JSONResponse:
    """Run `handle` once per event key; a repeat gets the first answer back."""
    registry = found.registry
    digest = hashlib.sha256(raw).hexdigest()
    claimed = await asyncio.to_thread(registry.claim_idempotency_key, scope, key, digest, what)
    if claimed.completed:
        if claimed.fingerprint != digest:
            log.warning("webhook.same_id_other_body", scope=scope, what=what)
        log.info("webhook.repeat", scope=scope, what=what)
        assert claimed.status_code is not None and claimed.response is not None
        return JSONResponse(
            json.loads(claimed.response), claimed.status_code, headers={REPLAYED: "true"}
        )
    body = await handle()
    text = json.dumps(body, sort_keys=True)
    await asyncio.to_thread(registry.complete_idempotency_key, scope, key, 200, text)
    return JSONResponse(body, 200)


@router.post(
    "/ingram/order-status",
    summary="Ingram's order-status event (signed: x-hub-signature)",
    responses={401: {"description": "Unsigned, wrongly signed, or stale."}},
)
async def ingram_order_status(
    request: Request, found: Backends = Depends(backends)
) -> JSONResponse:
    raw, data = await _json_body(request)
    settings = found.settings
    event_id = data.get("eventId")
    check_ingram(settings, request.headers.get("x-hub-signature"), event_id)
    check_fresh(settings, data.get("eventTimeStamp"))
    try:
        event = OrderStatusAsyncNotificationRequest.from_dict(data)
    except (ValidationError, ValueError, TypeError):
        raise Problem(
            422, "invalid-input", "not an order-status event (OrderStatusAsyncNotificationRequest)"
        ) from None
    assert event is not None and isinstance(event_id, str)

    async def handle() -> dict[str, Any]:
        client = await found.client()
        results = []
        for resource in event.resource or []:
            done = await dispatch.ingram_order_status(
                client,
                found.registry,
                resource.event_type or event.event or "",
                resource.order_number,
                resource.customer_order_number,
            )
            results.append({"orderNumber": resource.order_number, **done.as_json()})
        return {"eventId": event_id, "event": event.event, "results": results}

    return await _once(found, INGRAM_SCOPE, event_id[:200], raw, handle, f"ingram {event.event}")


@router.post(
    "/partner-center",
    summary="Partner Center's events (signed: Authorization: Signature, X-MS-Certificate-Url)",
    responses={401: {"description": "Unsigned, wrongly signed, or an untrusted certificate."}},
)
async def partner_center_event(
    request: Request, found: Backends = Depends(backends)
) -> JSONResponse:
    raw = await request.body()
    await check_partner_center(
        found.settings,
        _certificates(request),
        request.headers.get("authorization"),
        request.headers.get("x-ms-certificate-url"),
        raw,
    )
    _, data = await _json_body(request)
    name, resource_uri = data.get("EventName"), data.get("ResourceUri")
    if not isinstance(name, str) or not isinstance(resource_uri, str):
        raise Problem(
            422, "invalid-input", "a Partner Center event names EventName and ResourceUri"
        )

    async def handle() -> dict[str, Any]:
        done = await dispatch.partner_center_event(
            await found.client(), found.registry, await found.provider(), name, resource_uri
        )
        return {"EventName": name, "ResourceUri": resource_uri, **done.as_json()}

    # Partner Center's events carry no id: the signed body is the event.
    key = hashlib.sha256(raw).hexdigest()
    return await _once(found, PARTNER_CENTER_SCOPE, key, raw, handle, f"partner-center {name}")
