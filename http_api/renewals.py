"""Renewal payments and charges over HTTP (ops keys), on api/renewals.py as the CLI."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import renewals as renewal_api
from api.subscriptions import SubscriptionInputError, check_subscription_id
from csp_core.registry import ChargeAlreadyPaid, ChargeRecord, UnknownCharge, UnknownSubscription
from csp_core.stages import PaymentStatus
from http_api.auth import Caller, ops_only
from http_api.backends import Backends, backends
from http_api.idempotency import HEADER, idempotency_key, once
from http_api.problems import Problem, invalid

router = APIRouter(prefix="/v1", tags=["renewals"])


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscription_id: str
    period: str = Field(description="The billing period paid, YYYY-MM.")
    reference: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="The payment's reference (e.g. the SPEI tracking key): one reference "
            "is one payment, recorded once.",
        ),
    ]
    amount: str | int | float | None = Field(
        None, description='MXN paid, e.g. "1290.00". Default: all that is still due.'
    )
    paid_at: str | None = Field(
        None,
        description="When it was paid, ISO 8601 (without an offset: business local time). "
        "Default: now. Payments at or after the cutoff (day 26 00:00) are late.",
    )


def charge_view(charge: ChargeRecord) -> dict[str, Any]:
    return {
        "subscription_id": charge.subscription_id,
        "period": charge.period,
        "status": charge.status.value,
        "amount": str(charge.amount),
        "amount_paid": str(charge.amount_paid),
        "amount_due": str(charge.amount_due),
        "currency": charge.currency,
        "due_at": charge.due_at.isoformat(),
        "paid_at": charge.paid_at.isoformat() if charge.paid_at else None,
        "payment_reference": charge.payment_reference,
    }


@router.post(
    "/payments",
    summary="Record a renewal payment (ops)",
    responses={
        403: {"description": "Not an ops key."},
        404: {"description": "No charge for that subscription and period."},
        409: {"description": "The charge is already paid by another payment."},
        422: {"description": "Invalid input, or an Idempotency-Key used for another payment."},
    },
    openapi_extra={
        "parameters": [
            {
                "name": HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "The same key again returns the first answer; with another "
                "payment, 422. The reference already makes a payment count once.",
            }
        ]
    },
)
async def record_payment(
    request: Request,
    payment: PaymentRequest,
    caller: Caller = Depends(ops_only),
    found: Backends = Depends(backends),
) -> Response:
    """Records the payment (once per reference) and tells the renewal workflow, which stops
    its escalation. 200 with the charge as it stands; the same reference again answers the same
    way (`Idempotent-Replayed: true`); 404 for an unknown charge, 409 for a charge already paid
    by another payment."""
    try:
        sid = check_subscription_id(payment.subscription_id, "subscription_id")
        period = renewal_api.check_period(payment.period, "period")
        amount = renewal_api.parse_amount(
            None if payment.amount is None else str(payment.amount), "amount"
        )
        paid_at = renewal_api.parse_paid_at(
            payment.paid_at, found.settings.business_timezone, "paid_at"
        )
    except (SubscriptionInputError, renewal_api.PaymentInputError) as err:
        raise invalid([str(err)]) from None
    key = idempotency_key(request)
    client = await found.client()

    async def run() -> tuple[dict[str, Any], bool]:
        try:
            result = await renewal_api.record_payment(
                client, found.registry, sid, period, payment.reference, amount, paid_at
            )
        except (UnknownSubscription, UnknownCharge) as err:
            raise Problem(404, "not-found", str(err)) from None
        except ChargeAlreadyPaid as err:
            raise Problem(409, "refused", str(err)) from None
        except ValueError as err:
            raise invalid([str(err)]) from None
        body = {"reference": payment.reference, "charge": charge_view(result.charge)}
        return body, not result.newly_paid

    payload = {
        "subscription_id": sid,
        "period": period,
        "reference": payment.reference,
        "amount": None if amount is None else str(amount),
        "paid_at": None if paid_at is None else paid_at.isoformat(),
    }
    return await once(found, request, "payments", key, payload, run)


@router.get(
    "/renewals",
    summary="Renewal charges with their status (ops)",
    responses={403: {"description": "Not an ops key."}},
)
async def list_renewals(
    period: Annotated[str | None, Query(description="YYYY-MM.")] = None,
    status: Annotated[PaymentStatus | None, Query(description="Only this status.")] = None,
    caller: Caller = Depends(ops_only),
    found: Backends = Depends(backends),
) -> list[dict[str, Any]]:
    """As `csp renewals status --json`: each charge with what is due and the proration lines
    (seat changes, carried credits) it bills."""
    if period is not None:
        try:
            renewal_api.check_period(period, "period")
        except renewal_api.PaymentInputError as err:
            raise invalid([str(err)]) from None
    charges = await asyncio.to_thread(renewal_api.renewal_charges, found.registry, period, status)
    return [renewal_api.charge_json(charge, lines) for charge, lines in charges]


__all__ = ["router"]
