"""The identifiers the Ingram adapter derives: our PO numbers, a tenant's key in Ingram's order
search, IM-CorrelationID, and Microsoft's indirect-reseller invitation link.

All derive from stable inputs (the port's request id, the tenant's domain), so a retry sends
the same values and finds what the first attempt did.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

ONMICROSOFT = ".onmicrosoft.com"
CORRELATION_MAX = 32
ORDER_NUMBER_MAX = 18  # customerOrderNumber and endCustomerOrderNumber (maxLength 18)


def _b32(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=")[:length]


def tenant_key(domain: str) -> str:
    """The endCustomerOrderNumber of every order we place for this tenant (18 characters)."""
    return "T" + _b32(domain.strip().lower(), ORDER_NUMBER_MAX - 1)


def customer_order_number(request_id: str) -> str:
    """Our PO number for one logical order (18 characters, the same on every retry)."""
    return "C" + _b32(request_id, ORDER_NUMBER_MAX - 1)


def correlation_id(request_id: str | None) -> str:
    """IM-CorrelationID: the request id's 32 hex digits when it is a UUID (ours are), else a
    digest of it; a fresh one for reads that are not part of a logical request."""
    if request_id is None:
        return uuid.uuid4().hex
    try:
        return uuid.UUID(request_id).hex
    except ValueError:
        return hashlib.sha256(request_id.encode()).hexdigest()[:CORRELATION_MAX]


def domain_prefix(domain: str) -> str:
    return domain.strip().lower().removesuffix(ONMICROSOFT)


def invitation_link(partner_tenant_id: str, partner_mpn_id: str, ingram_tenant_id: str) -> str:
    """Microsoft's indirect-reseller invitation: the client accepts us and Ingram at once
    (learn.microsoft.com/partner-center/regional-authorization-overview)."""
    return (
        "https://portal.office.com/partner/partnersignup.aspx?type=IndirectResellerRelationship"
        f"&id={partner_tenant_id}&csp=1&msppid={partner_mpn_id}&indirectCSP={ingram_tenant_id}"
    )
