"""Subscriptions over HTTP, on the client functions the CLI uses (api/subscriptions.py).

Each change is the subscription workflow's Update, whose id is the request's Idempotency-Key:
200 with where the subscription stands, or 409 with the New Commerce rule and the way out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from temporalio.client import Client

from api import subscriptions as subscription_api
from api.subscriptions import (
    SubscriptionInputError,
    SubscriptionNotFound,
    SubscriptionRefused,
    SubscriptionRow,
)
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.values import SubscriptionDetails
from http_api.auth import Caller, authenticated
from http_api.backends import Backends, backends
from http_api.idempotency import HEADER, idempotency_key, once
from http_api.problems import Problem, invalid

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

KEY_DOC = (
    "Your id for this change (it becomes the Workflow Update's id): the same key again returns "
    "the first answer; with another request, 422. Without one, a key is made up and returned "
    "in this header of the answer."
)
KEY_PARAMETER: dict[str, Any] = {
    "parameters": [
        {
            "name": HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": KEY_DOC,
        }
    ]
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such subscription (or another reseller's)."}
}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = NOT_FOUND | {
    200: {"headers": {HEADER: {"description": "The key this change was made under."}}},
    409: {"description": "Refused: the rule and the way out."},
    422: {"description": "Invalid input, or an Idempotency-Key used for another request."},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeatsTotal(_Body):
    quantity: StrictInt = Field(
        description="The total seats wanted: fewer only within 168 h of the purchase or the "
        "renewal, never below one."
    )


class SeatsAdded(_Body):
    add: StrictInt = Field(description="Seats to add (any time while active); at least 1.")


class AutoRenew(_Body):
    enabled: StrictBool = Field(description="Renew at the term's end (true) or let it expire.")


class Transfer(_Body):
    to_domain: str = Field(description="The other tenant, <prefix>.onmicrosoft.com.")


def _checked(check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except SubscriptionInputError as err:
        raise invalid([str(err)]) from None


async def _owned(found: Backends, caller: Caller, subscription_id: str) -> tuple[Client, str]:
    """The checked id and a client, once the caller may see the subscription (404 otherwise,
    in the same words for an unknown one and another reseller's)."""
    sid = _checked(subscription_api.check_subscription_id, subscription_id, "subscription_id")
    client = await found.client()
    try:
        owner = await subscription_api.subscription_reseller(client, sid)
    except SubscriptionNotFound as err:
        raise Problem(404, "not-found", str(err)) from None
    if not caller.sees(owner):
        raise Problem(
            404,
            "not-found",
            str(subscription_api.not_found(client, sid)),
            log_reason=f"a subscription of another reseller (the key acts for "
            f"{caller.reseller_id})",
        )
    return client, sid


@router.get("", response_model=list[SubscriptionRow], summary="Subscriptions by tenant or status")
async def list_subscriptions(
    domain: Annotated[str | None, Query(description="Only this tenant.")] = None,
    status: Annotated[SubscriptionStatus | None, Query(description="Only this status.")] = None,
    reseller: Annotated[str | None, Query(description="Only this reseller (ops keys).")] = None,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> list[SubscriptionRow]:
    """From Temporal visibility. A reseller's key lists that reseller's subscriptions only."""
    wanted_domain = _checked(subscription_api.check_domain, domain, "domain") if domain else None
    wanted = (
        _checked(subscription_api.check_reseller_id, reseller, "reseller") if reseller else None
    )
    if not caller.is_ops:
        if wanted is not None and wanted != caller.reseller_id:
            return []
        wanted = caller.reseller_id
    return await subscription_api.list_subscriptions(
        await found.client(), domain=wanted_domain, reseller_id=wanted, status=status
    )


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionDetails,
    summary="Where it stands",
    responses=NOT_FOUND,
)
async def get_subscription(
    subscription_id: str,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> SubscriptionDetails:
    client, sid = await _owned(found, caller, subscription_id)
    try:
        return await subscription_api.subscription_details(client, sid)
    except SubscriptionRefused as err:
        raise Problem(404, "not-found", str(err)) from None


async def _change(
    request: Request,
    found: Backends,
    caller: Caller,
    subscription_id: str,
    payload: dict[str, Any],
    call: Callable[[Client, str, str], Awaitable[SubscriptionDetails]],
) -> Response:
    client, sid = await _owned(found, caller, subscription_id)
    key = idempotency_key(request)

    async def run() -> tuple[dict[str, Any], bool]:
        try:
            details = await call(client, sid, key)
        except SubscriptionNotFound as err:
            raise Problem(404, "not-found", str(err)) from None
        except SubscriptionRefused as err:
            raise Problem(409, "refused", str(err), code=err.code) from None
        return details.model_dump(mode="json"), False

    return await once(found, request, f"subscription:{sid}", key, payload, run)


@router.put(
    "/{subscription_id}/seats",
    response_model=SubscriptionDetails,
    responses=CHANGE_RESPONSES,
    openapi_extra=KEY_PARAMETER,
    summary="Set the total seats",
)
async def set_seats(
    request: Request,
    subscription_id: str,
    seats: SeatsTotal,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> Response:
    return await _change(
        request,
        found,
        caller,
        subscription_id,
        {"op": "set_seats", "quantity": seats.quantity},
        lambda client, sid, key: subscription_api.set_seats(client, sid, seats.quantity, key),
    )


@router.post(
    "/{subscription_id}/seats",
    response_model=SubscriptionDetails,
    responses=CHANGE_RESPONSES,
    openapi_extra=KEY_PARAMETER,
    summary="Add seats",
)
async def add_seats(
    request: Request,
    subscription_id: str,
    seats: SeatsAdded,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> Response:
    added = _checked(subscription_api.check_seats_to_add, seats.add, "add", "PUT quantity")
    return await _change(
        request,
        found,
        caller,
        subscription_id,
        {"op": "add_seats", "add": added},
        lambda client, sid, key: subscription_api.add_seats(client, sid, added, key),
    )


@router.post(
    "/{subscription_id}/cancellation",
    response_model=SubscriptionDetails,
    responses=CHANGE_RESPONSES,
    openapi_extra=KEY_PARAMETER,
    summary="Cancel (within its 168 h window)",
)
async def cancel(
    request: Request,
    subscription_id: str,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> Response:
    return await _change(
        request, found, caller, subscription_id, {"op": "cancel"}, subscription_api.cancel
    )


@router.put(
    "/{subscription_id}/auto-renew",
    response_model=SubscriptionDetails,
    responses=CHANGE_RESPONSES,
    openapi_extra=KEY_PARAMETER,
    summary="Turn auto-renew on or off",
)
async def set_auto_renew(
    request: Request,
    subscription_id: str,
    auto_renew: AutoRenew,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> Response:
    enabled = auto_renew.enabled
    return await _change(
        request,
        found,
        caller,
        subscription_id,
        {"op": "set_auto_renew", "enabled": enabled},
        lambda client, sid, key: subscription_api.set_auto_renew(client, sid, enabled, key),
    )


@router.post(
    "/{subscription_id}/transfer",
    response_model=SubscriptionDetails,
    responses=CHANGE_RESPONSES,
    openapi_extra=KEY_PARAMETER,
    summary="Move to another tenant: always 409, with the way out",
)
async def transfer(
    request: Request,
    subscription_id: str,
    move: Transfer,
    caller: Caller = Depends(authenticated),
    found: Backends = Depends(backends),
) -> Response:
    target = _checked(subscription_api.check_domain, move.to_domain, "to_domain")
    return await _change(
        request,
        found,
        caller,
        subscription_id,
        {"op": "transfer", "to_domain": target},
        lambda client, sid, key: subscription_api.transfer(client, sid, target, key),
    )
