"""Partner Center REST client (v1) implementing the provider port.

The same client talks to https://api.partnercenter.microsoft.com and to the local sandbox,
which speaks the same shapes. Every write carries the caller's `MS-RequestId` so a retried
logical request is done once by the provider. Logs carry method, path, status, correlation
id and latency only: response bodies hold generated admin passwords.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog
from pydantic import SecretStr

from csp_core.providers.port import (
    CreatedCustomer,
    NewCustomer,
    OrderLine,
    PlacedOrder,
    ProviderCustomer,
    ProviderError,
    ProviderSubscription,
    ProvisioningState,
    RefundableSeats,
    SubscriptionStatus,
)

log = structlog.get_logger(__name__)

LOCALE = "es-MX"
# starts_with on a full domain matches at most a handful of customers; one page is enough.
_FIND_PAGE_SIZE = 50
_MAX_DESCRIPTION = 300


def _seg(value: str) -> str:
    """Quote one path segment (tenant ids, domains) so input can never change the path."""
    return quote(value, safe="")


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delta-seconds, or (rarely) an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_from_response(method: str, path: str, response: httpx.Response) -> ProviderError:
    """Build a ProviderError from a Partner Center error answer: {code, description}.

    The gateway (throttling, auth) answers {statusCode, message} instead; both are read.
    Only the code and a bounded description are kept: never the request or other fields.
    """
    code: str | None = None
    description: str | None = None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code", body.get("errorCode"))
        code = str(raw_code) if raw_code not in (None, "") else None
        raw_desc = body.get("description", body.get("message"))
        if isinstance(raw_desc, str) and raw_desc:
            description = raw_desc[:_MAX_DESCRIPTION]
    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    message = f"Partner Center {method} {path} answered {response.status_code}"
    if code:
        message += f" [{code}]"
    if description:
        message += f": {description}"
    return ProviderError(
        message, status=response.status_code, code=code, retry_after_seconds=retry_after
    )


def _parse_dt(value: Any) -> datetime | None:
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
        until = _parse_dt(detail.get("allowedUntilDateTime")) if isinstance(detail, dict) else None
        if until is None:
            continue
        seats.append(RefundableSeats(quantity=int(detail.get("quantity", 0)), allowed_until=until))
    return tuple(seats)


def _subscription(resource: dict[str, Any]) -> ProviderSubscription:
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
        creation_date=_parse_dt(resource.get("creationDate")),
        effective_start_date=_parse_dt(resource.get("effectiveStartDate")),
        commitment_end_date=_parse_dt(resource.get("commitmentEndDate")),
        cancellation_allowed_until=_parse_dt(resource.get("cancellationAllowedUntilDate")),
        refundable_quantity=_refundable(resource.get("refundableQuantity")),
    )


def _subscription_path(tenant_id: str, subscription_id: str) -> str:
    return f"/v1/customers/{_seg(tenant_id)}/subscriptions/{_seg(subscription_id)}"


def _customer(resource: dict[str, Any]) -> ProviderCustomer:
    profile = resource.get("companyProfile") or {}
    billing = resource.get("billingProfile") or {}
    relationship = str(resource.get("relationshipToPartner") or "none").lower()
    return ProviderCustomer(
        tenant_id=profile.get("tenantId") or resource["id"],
        domain=str(profile.get("domain", "")).lower(),
        company_name=profile.get("companyName") or billing.get("companyName") or "",
        has_reseller_relationship=relationship == "reseller",
    )


class PartnerCenterClient:
    """Async Partner Center v1 client; one pooled httpx.AsyncClient per instance."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "X-Locale": LOCALE},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
        request_id: str | None = None,
        ok_404: bool = False,
    ) -> httpx.Response:
        """Send one call; raise ProviderError for anything but 2xx (and 404 when ok_404)."""
        correlation_id = str(uuid.uuid4())
        headers = {
            # Set per call, not as a client default, so it never shows in client reprs.
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "MS-CorrelationId": correlation_id,
        }
        if request_id is not None:
            headers["MS-RequestId"] = request_id
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, path, params=params, json=body, headers=headers
            )
        except httpx.TransportError as exc:
            elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
            log.warning(
                "partner_center.transport_error",
                method=method,
                path=path,
                error=type(exc).__name__,
                correlation_id=correlation_id,
                request_id=request_id,
                elapsed_ms=elapsed_ms,
            )
            # Deliberately no str(exc): keep the message to the failure kind.
            raise ProviderError(
                f"Partner Center {method} {path} unreachable: {type(exc).__name__}",
                status=503,
                code=type(exc).__name__,
            ) from None
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "partner_center.call",
            method=method,
            path=path,
            status=response.status_code,
            correlation_id=correlation_id,
            request_id=request_id,
            elapsed_ms=elapsed_ms,
        )
        if response.is_success or (ok_404 and response.status_code == 404):
            return response
        raise _error_from_response(method, path, response)

    @staticmethod
    def _json(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                f"Partner Center {method} {path} answered {response.status_code} "
                "with a body that is not a JSON object",
                status=502,
                code="InvalidResponse",
            )
        return data

    async def _get_json(
        self, path: str, params: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        response = await self._request("GET", path, params=params)
        return self._json(response, "GET", path)

    # -- Provider port -----------------------------------------------------------------------

    async def domain_available(self, domain: str) -> bool:
        path = f"/v1/domains/{_seg(domain.strip().lower())}"
        response = await self._request("HEAD", path, ok_404=True)
        return response.status_code == 404

    async def find_customer_by_domain(self, domain: str) -> ProviderCustomer | None:
        wanted = domain.strip().lower()
        flt = json.dumps({"Field": "Domain", "Value": wanted, "Operator": "starts_with"})
        data = await self._get_json("/v1/customers", {"size": _FIND_PAGE_SIZE, "filter": flt})
        for item in data.get("items") or []:
            customer = _customer(item)
            if customer.domain == wanted:
                return customer
        return None

    async def create_customer(self, customer: NewCustomer, *, request_id: str) -> CreatedCustomer:
        domain = customer.domain.strip().lower()
        address = customer.address
        body: dict[str, Any] = {
            "billingProfile": {
                "email": customer.email,
                "culture": customer.culture,
                "language": customer.language,
                "companyName": customer.company_name,
                "defaultAddress": {
                    "country": address.country,
                    "city": address.city,
                    "state": address.state,
                    "addressLine1": address.line1,
                    "addressLine2": address.line2,
                    "postalCode": address.postal_code,
                    "firstName": customer.first_name,
                    "lastName": customer.last_name,
                },
            },
            "companyProfile": {"domain": domain},
        }
        if customer.associated_partner_id:
            body["associatedPartnerId"] = customer.associated_partner_id
        path = "/v1/customers"
        response = await self._request("POST", path, body=body, request_id=request_id)
        data = self._json(response, "POST", path)
        credentials = data.get("userCredentials") or {}
        password = credentials.get("password")
        if not password:
            raise ProviderError(
                "Partner Center created the customer but returned no admin credentials",
                status=502,
                code="MissingCredentials",
            )
        profile = data.get("companyProfile") or {}
        created_domain = str(profile.get("domain") or domain).lower()
        username = str(credentials.get("userName") or "admin")
        # Partner Center answers the bare user name ("admin"); sign-in needs the UPN.
        if "@" not in username:
            username = f"{username}@{created_domain}"
        return CreatedCustomer(
            tenant_id=profile.get("tenantId") or data["id"],
            domain=created_domain,
            admin_username=username,
            admin_password=SecretStr(password),
        )

    async def relationship_request_link(self) -> str:
        data = await self._get_json("/v1/customers/relationshiprequests")
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise ProviderError(
                "Partner Center returned no relationship request url",
                status=502,
                code="InvalidResponse",
            )
        return url

    async def _order_subscriptions(
        self, tenant_id: str, order_id: str
    ) -> list[ProviderSubscription]:
        data = await self._get_json(
            f"/v1/customers/{_seg(tenant_id)}/subscriptions", {"order_id": order_id}
        )
        return [_subscription(item) for item in data.get("items") or []]

    async def place_order(
        self,
        tenant_id: str,
        lines: list[OrderLine],
        *,
        request_id: str,
        new_tenant: NewCustomer | None = None,  # created already by create_customer
    ) -> PlacedOrder:
        body = {
            "referenceCustomerId": tenant_id,
            "lineItems": [
                {
                    "lineItemNumber": line.line_number,
                    "offerId": line.offer_id,
                    "quantity": line.quantity,
                    "termDuration": line.term_duration,
                    "billingCycle": line.billing_cycle,
                    "friendlyName": line.friendly_name,
                }
                for line in lines
            ],
        }
        path = f"/v1/customers/{_seg(tenant_id)}/orders"
        response = await self._request("POST", path, body=body, request_id=request_id)
        order = self._json(response, "POST", path)
        order_id = order["id"]
        return PlacedOrder(
            order_id=order_id,
            status=str(order.get("status", "unknown")),
            subscriptions=await self._order_subscriptions(tenant_id, order_id),
        )

    async def get_order(self, tenant_id: str, order_id: str) -> PlacedOrder:
        order = await self._get_json(f"/v1/customers/{_seg(tenant_id)}/orders/{_seg(order_id)}")
        return PlacedOrder(
            order_id=order.get("id", order_id),
            status=str(order.get("status", "unknown")),
            subscriptions=await self._order_subscriptions(tenant_id, order_id),
        )

    async def subscription_provisioning(
        self, tenant_id: str, subscription_id: str
    ) -> ProvisioningState:
        path = (
            f"/v1/customers/{_seg(tenant_id)}/subscriptions/{_seg(subscription_id)}"
            "/provisioningstatus"
        )
        data = await self._get_json(path)
        status = str(data.get("status", "")).lower()
        try:
            return ProvisioningState(status)
        except ValueError:
            raise ProviderError(
                f"Partner Center GET {path} returned an unknown provisioning status",
                status=502,
                code="InvalidResponse",
            ) from None

    async def list_subscriptions(self, tenant_id: str) -> list[ProviderSubscription]:
        data = await self._get_json(f"/v1/customers/{_seg(tenant_id)}/subscriptions")
        return [_subscription(item) for item in data.get("items") or []]

    async def set_subscription_status(
        self,
        tenant_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        request_id: str,
    ) -> ProviderSubscription:
        return await self._patch_subscription(
            tenant_id,
            subscription_id,
            {"status": SubscriptionStatus(status).value},
            request_id=request_id,
        )

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> ProviderSubscription:
        return _subscription(await self._get_json(_subscription_path(tenant_id, subscription_id)))

    async def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, request_id: str
    ) -> ProviderSubscription:
        return await self._patch_subscription(
            tenant_id, subscription_id, {"quantity": quantity}, request_id=request_id
        )

    async def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, request_id: str
    ) -> ProviderSubscription:
        return await self._patch_subscription(
            tenant_id,
            subscription_id,
            {"status": SubscriptionStatus.DELETED.value},
            request_id=request_id,
        )

    async def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, request_id: str
    ) -> ProviderSubscription:
        return await self._patch_subscription(
            tenant_id, subscription_id, {"autoRenewEnabled": enabled}, request_id=request_id
        )

    async def _patch_subscription(
        self,
        tenant_id: str,
        subscription_id: str,
        changes: dict[str, Any],
        *,
        request_id: str,
    ) -> ProviderSubscription:
        # Partner Center PATCHes the full resource: read it, apply the change, send it back.
        # A retry reads again, so it sends what the provider holds then; the MS-RequestId makes
        # a change that already went through answer its first response instead of repeating.
        path = _subscription_path(tenant_id, subscription_id)
        resource = await self._get_json(path)
        resource.update(changes)
        response = await self._request("PATCH", path, body=resource, request_id=request_id)
        return _subscription(self._json(response, "PATCH", path))


__all__ = ["PartnerCenterClient"]
