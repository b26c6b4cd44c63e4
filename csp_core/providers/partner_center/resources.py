"""Partner Center resources (subscription, customer) read into the port's models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from csp_core.providers.partner_center.transport import seg
from csp_core.providers.port import (
    ProviderCustomer,
    ProviderSubscription,
    RefundableSeats,
    SubscriptionStatus,
)

log = structlog.get_logger("csp_core.providers.partner_center")


def parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_status(value: Any) -> SubscriptionStatus:
    try:
        return SubscriptionStatus(str(value).lower())
    except ValueError:
        log.warning("partner_center.unknown_subscription_status", status=value)
        return SubscriptionStatus.NONE


def _refundable(value: Any) -> tuple[RefundableSeats, ...]:
    """refundableQuantity {totalQuantity, details: [{quantity, allowedUntilDateTime}]}."""
    if not isinstance(value, dict):
        return ()
    seats = []
    for detail in value.get("details") or []:
        until = parse_dt(detail.get("allowedUntilDateTime")) if isinstance(detail, dict) else None
        if until is None:
            continue
        seats.append(RefundableSeats(quantity=int(detail.get("quantity", 0)), allowed_until=until))
    return tuple(seats)


def subscription(resource: dict[str, Any]) -> ProviderSubscription:
    return ProviderSubscription(
        subscription_id=resource["id"],
        offer_id=resource.get("offerId", ""),
        offer_name=resource.get("offerName") or resource.get("friendlyName") or None,
        quantity=int(resource.get("quantity", 0)),
        status=_parse_status(resource.get("status")),
        order_id=resource.get("orderId"),
        term_duration=resource.get("termDuration"),
        billing_cycle=resource.get("billingCycle"),
        auto_renew_enabled=bool(resource.get("autoRenewEnabled", True)),
        creation_date=parse_dt(resource.get("creationDate")),
        effective_start_date=parse_dt(resource.get("effectiveStartDate")),
        commitment_end_date=parse_dt(resource.get("commitmentEndDate")),
        cancellation_allowed_until=parse_dt(resource.get("cancellationAllowedUntilDate")),
        refundable_quantity=_refundable(resource.get("refundableQuantity")),
    )


def etag(resource: dict[str, Any]) -> str | None:
    """The resource's ETag (attributes.etag; the docs also show it capitalised)."""
    attributes = resource.get("attributes") or resource.get("Attributes") or {}
    if not isinstance(attributes, dict):
        return None
    value = attributes.get("etag", attributes.get("Etag"))
    return str(value) if value else None


def subscription_path(tenant_id: str, subscription_id: str) -> str:
    return f"/v1/customers/{seg(tenant_id)}/subscriptions/{seg(subscription_id)}"


def customer(resource: dict[str, Any]) -> ProviderCustomer:
    profile = resource.get("companyProfile") or {}
    billing = resource.get("billingProfile") or {}
    relationship = str(resource.get("relationshipToPartner") or "none").lower()
    return ProviderCustomer(
        tenant_id=profile.get("tenantId") or resource["id"],
        domain=str(profile.get("domain", "")).lower(),
        company_name=profile.get("companyName") or billing.get("companyName") or "",
        has_reseller_relationship=relationship == "reseller",
    )


__all__ = ["customer", "etag", "parse_dt", "subscription", "subscription_path"]
