"""Ingram Micro Xvantage Integration (XI) adapter implementing the provider port.

Transport: an async httpx client of our own, with requests built as, and answers parsed by,
the pydantic models of Ingram's SDK (`xi-sdk-resellers`, module `xi.sdk.resellers`). The SDK's
own ApiClient is synchronous urllib3: in an async worker every call would hold a thread (and a
pool per thread) for the whole round trip, and its token call is a GET with the client secret
in the query string (as the spec has it), where proxies and access logs keep URLs. So the SDK
is the contract (models, field names, limits such as IM-CorrelationID <= 32 characters) and
httpx is the wire. The token is fetched with a POST form (RFC 6749), cached, renewed a minute
before it expires, and renewed once more on a 401 in mid-run.

How the port maps onto XI, which has no customer resource (Ingram creates or uses the
Microsoft tenant named by an order's vendor fields):
- A tenant is known to Ingram by its onmicrosoft domain, so that is this adapter's tenant id.
  Every order we place carries `endCustomerOrderNumber` = `tenant_key(domain)`, so our orders
  for a tenant are found with the order search (XI has no other index by tenant).
- create_customer sends nothing: the tenant is created by the first order
  (`tenant_preference=new`, with the client's address and MCA acceptance) and Microsoft /
  Ingram hand the admin credentials to the client's contact; it answers no password.
- find_customer_by_domain: Ingram can order on any existing tenant by domain; it is ours
  (`has_reseller_relationship`) when an order of ours on it went through. XI cannot tell
  whether a client accepted us meanwhile: that takes ops' confirmation (partner_accepted).
- domain_available: XI has no domain check; Ingram refuses a taken domain when it processes
  the order (the order then fails as a business refusal).
- place_order: vendorrequiredinfo (the Microsoft NCE fields Ingram asks for), then the
  asynchronous v7 order (a confirmation number), then the order search and order details
  until the subscriptions exist; meanwhile it raises a transient OrderInProgress, so the
  activity's retries poll. The v7 request's IM-CorrelationID and customerOrderNumber derive
  from the port's request_id: a retry is recognisable, and finds its order instead of placing
  another.
- get_order, subscription_provisioning, get_subscription, list_subscriptions: order details
  (serviceContractInfo).
- No XI endpoint changes a subscription's status or seats, cancels it or turns auto-renew off:
  those raise ProviderNotOffered (ops do them in Ingram's marketplace).

SDK 1.3.0 vs the current spec: the v7 request model has header `vmfAdditionalAttributes`
(name/value) but not the spec's newer line-level `vriAdditionalAttributes`, `planid` or
`subscriptionPeriod`; the NCE fields therefore go in the header attributes, and the term and
billing cycle in each line's `vmfAdditionalAttributesLines` (`term_duration`, `billing_cycle`:
our names, UNVERIFIED against Ingram). In the SDK, vendorrequiredinfo's `vriAdditionalAttributes`
is a flat list of attributes (the spec's example nests them in per-vendor containers), and the
nested `choices` keep only `string`: the adapter reads the top-level attributes by name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import structlog
from pydantic import BaseModel, SecretStr, ValidationError
from xi.sdk.resellers.models import (
    AccesstokenResponse,
    ErrorResponse,
    OrderCreateV7Request,
    OrderCreateV7RequestEndUserInfo,
    OrderCreateV7RequestLinesInner,
    OrderCreateV7RequestLinesInnerVmfAdditionalAttributesLinesInner,
    OrderCreateV7RequestVmfAdditionalAttributesInner,
    OrderCreateV7Response201,
    OrderDetailB2B,
    OrderDetailB2BLinesInner,
    OrderSearchResponse,
    PostCreateorderV7400Response,
    VendorRequiredInfoRequest,
    VendorRequiredInfoRequestProductsInner,
    VendorRequiredInforesponseInner,
)

from csp_core.orders.mexico import mx_state_code
from csp_core.providers.partner_center import _parse_retry_after
from csp_core.providers.port import (
    CreatedCustomer,
    NewCustomer,
    OrderLine,
    PlacedOrder,
    ProviderCustomer,
    ProviderError,
    ProviderNotOffered,
    ProviderSubscription,
    ProvisioningState,
    SubscriptionStatus,
)

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=BaseModel)

PROVIDER_NAME = "Ingram Micro Xvantage"
TOKEN_PATH = "/oauth/oauth20/token"
VENDOR_INFO_PATH = "/resellers/v7/vendorrequiredinfo"
ORDERS_V7_PATH = "/resellers/v7/orders"
ORDER_SEARCH_PATH = "/resellers/v6/orders/search"
ORDER_DETAILS_PATH = "/resellers/v6.1/orders/{}"
ONMICROSOFT = ".onmicrosoft.com"
# Renew the token this long before Ingram says it expires (clocks drift, calls take time).
TOKEN_MARGIN_SECONDS = 60.0
# Between polls of an order Ingram is still processing (the activity's backoff adds to it).
ORDER_POLL_SECONDS = 5.0
_MAX_DESCRIPTION = 300
_CORRELATION_MAX = 32
_ORDER_NUMBER_MAX = 18  # customerOrderNumber and endCustomerOrderNumber (maxLength 18)

# Microsoft NCE vendor fields (vendorrequiredinfo's vriAdditionalAttributes).
TENANT_PREFERENCE = "tenant_preference"
ATTESTATION = "partner_on_record_attestation_accepted"
ECHOED_FIELDS = ("tier1_mpn", "indirect_reseller_domain")  # prefilled by Ingram: sent back


class OrderInProgress(ProviderError):
    """Ingram accepted the order and is still processing it: look again later (transient)."""

    def __init__(self, message: str, *, retry_after_seconds: float = ORDER_POLL_SECONDS) -> None:
        super().__init__(
            message, status=202, code="ORDER_IN_PROGRESS", retry_after_seconds=retry_after_seconds
        )

    @property
    def transient(self) -> bool:
        return True


def _b32(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=")[:length]


def tenant_key(domain: str) -> str:
    """The endCustomerOrderNumber of every order we place for this tenant (18 characters)."""
    return "T" + _b32(domain.strip().lower(), _ORDER_NUMBER_MAX - 1)


def customer_order_number(request_id: str) -> str:
    """Our PO number for one logical order (18 characters, the same on every retry)."""
    return "C" + _b32(request_id, _ORDER_NUMBER_MAX - 1)


def correlation_id(request_id: str | None) -> str:
    """IM-CorrelationID: the request id's 32 hex digits when it is a UUID (ours are), else a
    digest of it; a fresh one for reads that are not part of a logical request."""
    if request_id is None:
        return uuid.uuid4().hex
    try:
        return uuid.UUID(request_id).hex
    except ValueError:
        return hashlib.sha256(request_id.encode()).hexdigest()[:_CORRELATION_MAX]


def domain_prefix(domain: str) -> str:
    return domain.strip().lower().removesuffix(ONMICROSOFT)


def invitation_link(partner_tenant_id: str, partner_mpn_id: str, ingram_tenant_id: str) -> str:
    """Microsoft's indirect-reseller invitation: the client accepts us and Ingram at once
    (learn.microsoft.com/partner-center/regional-authorization-overview)."""
    return (
        "https://portal.office.com/partner/partnersignup.aspx?type=IndirectResellerRelationship"
        f"&id={partner_tenant_id}&csp=1&msppid={partner_mpn_id}&indirectCSP={ingram_tenant_id}"
    )


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else value


def _attribute(name: str, value: str) -> OrderCreateV7RequestVmfAdditionalAttributesInner:
    return OrderCreateV7RequestVmfAdditionalAttributesInner(
        attribute_name=name, attribute_value=value
    )


def _parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Ingram's contract status of a subscription line -> the port's subscription status.
_CONTRACT_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "pending": SubscriptionStatus.PENDING,
    "in progress": SubscriptionStatus.PENDING,
    "suspended": SubscriptionStatus.SUSPENDED,
    "expired": SubscriptionStatus.EXPIRED,
    "disabled": SubscriptionStatus.DISABLED,
    "canceled": SubscriptionStatus.DELETED,
    "cancelled": SubscriptionStatus.DELETED,
    "failed": SubscriptionStatus.NONE,
}
_CANCELLED_ORDER = frozenset({"canceled", "cancelled"})


def _line_subscription(order_number: str, line: OrderDetailB2BLinesInner) -> ProviderSubscription:
    contract = line.service_contract_info
    assert contract is not None and contract.subscriptions is not None
    sub = contract.subscriptions
    status_text = (contract.contract_info.contract_status if contract.contract_info else "") or ""
    quantity = line.quantity_ordered or 0
    if contract.license_info and contract.license_info.quantity:
        quantity = int(contract.license_info.quantity)
    start = _parse_dt(sub.subcription_start_date)
    attributes = {a.attribute_name: a.attribute_value for a in line.additional_attributes or []}
    return ProviderSubscription(
        subscription_id=sub.subscription_id or "",
        offer_id=line.vendor_part_number or "",
        quantity=quantity,
        status=_CONTRACT_STATUS.get(status_text.lower(), SubscriptionStatus.NONE),
        order_id=order_number,
        term_duration=sub.subscription_term,
        billing_cycle=sub.billing_model,
        auto_renew_enabled=attributes.get("auto_renew", "true").lower() != "false",
        creation_date=start,
        effective_start_date=start,
        commitment_end_date=_parse_dt(sub.subcription_end_date),
    )


def _has_subscription(line: OrderDetailB2BLinesInner) -> bool:
    contract = line.service_contract_info
    return bool(contract and contract.subscriptions and contract.subscriptions.subscription_id)


class XvantageClient:
    """Async Ingram Micro Xvantage client; one pooled httpx.AsyncClient per instance."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        customer_number: str,
        country_code: str = "MX",
        sender_id: str = "csp-orchestrator",
        partner_tenant_id: str,
        partner_mpn_id: str,
        ingram_tenant_id: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._headers = {
            "IM-CustomerNumber": customer_number,
            "IM-CountryCode": country_code,
            "IM-SenderID": sender_id,
        }
        self._invitation = invitation_link(partner_tenant_id, partner_mpn_id, ingram_tenant_id)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._token: SecretStr | None = None
        self._token_expires_at = 0.0  # time.monotonic()
        self._token_lock = asyncio.Lock()
        self.tokens_fetched = 0

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

    # -- auth --------------------------------------------------------------------------------

    async def _access_token(self, *, stale: SecretStr | None = None) -> SecretStr:
        """The cached token, fetched again when it is (nearly) expired or was refused."""
        async with self._token_lock:
            fresh = self._token is not None and time.monotonic() < self._token_expires_at
            if fresh and (stale is None or self._token is not stale):
                assert self._token is not None
                return self._token
            form = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
            }
            response = await self._send("POST", TOKEN_PATH, data=form, correlation=None)
            if not response.is_success:
                raise self._error("POST", TOKEN_PATH, response)
            token = self._parse(AccesstokenResponse, response, "POST", TOKEN_PATH)
            if not token.access_token:
                raise ProviderError(
                    "Ingram's token endpoint answered no access_token", status=502, code="NoToken"
                )
            lifetime = float(token.expires_in or 0) or 3600.0
            self._token = SecretStr(token.access_token)
            self._token_expires_at = time.monotonic() + max(
                lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2
            )
            self.tokens_fetched += 1
            log.info("xvantage.token_renewed", expires_in_s=lifetime)
            return self._token

    # -- transport ---------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        correlation: str | None,
        token: SecretStr | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(self._headers)
        headers["IM-CorrelationID"] = correlation or uuid.uuid4().hex
        if token is not None:
            # Set per call, never as a client default, so it never shows in client reprs.
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            log.warning(
                "xvantage.transport_error",
                method=method,
                path=path,
                error=type(exc).__name__,
                correlation_id=headers["IM-CorrelationID"],
            )
            # Timeouts and dropped connections are outages: retried (no str(exc): no payloads).
            raise ProviderError(
                f"Ingram {method} {path} unreachable: {type(exc).__name__}",
                status=503,
                code=type(exc).__name__,
            ) from None
        log.info(
            "xvantage.call",
            method=method,
            path=path,
            status=response.status_code,
            correlation_id=headers["IM-CorrelationID"],
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    async def _call(
        self, method: str, path: str, *, correlation: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One API call with a valid token: a 401 renews the token and tries once more, so a
        token that expired mid-run never reads as a refusal."""
        token = await self._access_token()
        response = await self._send(method, path, correlation=correlation, token=token, **kwargs)
        if response.status_code == 401:
            log.info("xvantage.token_refused", path=path)
            token = await self._access_token(stale=token)
            response = await self._send(
                method, path, correlation=correlation, token=token, **kwargs
            )
        if response.status_code == 204 or response.is_success:
            return response
        raise self._error(method, path, response)

    @staticmethod
    def _error(method: str, path: str, response: httpx.Response) -> ProviderError:
        """Ingram's error bodies: {errors: [{id|traceid, type, message}]} or a bare
        {traceid, type, message}. 429, 408 and 5xx are transient; other 4xx are refusals."""
        code = message = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            try:
                if isinstance(body.get("errors"), list):
                    first = (ErrorResponse.from_dict(body).errors or [None])[0]
                else:
                    first = PostCreateorderV7400Response.from_dict(body)
            except ValidationError:
                first = None
            if first is not None:
                code, message = first.type, first.message
            message = message or body.get("message") or body.get("error_description")
        text = f"Ingram {method} {path} answered {response.status_code}"
        if code:
            text += f" [{code}]"
        if message:
            text += f": {str(message)[:_MAX_DESCRIPTION]}"
        return ProviderError(
            text,
            status=response.status_code,
            code=code or str(response.status_code),
            retry_after_seconds=_parse_retry_after(response.headers.get("Retry-After")),
        )

    @staticmethod
    def _parse(model: type[M], response: httpx.Response, method: str, path: str) -> M:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError):
            raise ProviderError(
                f"Ingram {method} {path} answered a body that is not a {model.__name__}",
                status=502,
                code="InvalidResponse",
            ) from None

    # -- orders of ours ----------------------------------------------------------------------

    async def _search(self, *, cancelled: bool = False, **params: str) -> list[str]:
        """Ingram order numbers of our orders matching the search (cancelled ones too only
        when asked: a refused order proves nothing about a tenant)."""
        response = await self._call("GET", ORDER_SEARCH_PATH, params={**params, "pageSize": 100})
        if response.status_code == 204:
            return []
        found = self._parse(OrderSearchResponse, response, "GET", ORDER_SEARCH_PATH)
        return [
            order.ingram_order_number
            for order in found.orders or []
            if order.ingram_order_number
            and (cancelled or (order.order_status or "").lower() not in _CANCELLED_ORDER)
        ]

    async def _details(self, order_number: str) -> OrderDetailB2B:
        path = ORDER_DETAILS_PATH.format(order_number)
        response = await self._call("GET", path)
        return self._parse(OrderDetailB2B, response, "GET", path)

    async def _tenant_orders(self, domain: str) -> list[OrderDetailB2B]:
        numbers = await self._search(endCustomerOrderNumber=tenant_key(domain))
        return [await self._details(number) for number in numbers]

    async def _tenant_subscriptions(self, domain: str) -> list[ProviderSubscription]:
        return [
            _line_subscription(order.ingram_order_number or "", line)
            for order in await self._tenant_orders(domain)
            for line in order.lines or []
            if _has_subscription(line)
        ]

    async def _subscription(self, domain: str, subscription_id: str) -> ProviderSubscription:
        for sub in await self._tenant_subscriptions(domain):
            if sub.subscription_id == subscription_id:
                return sub
        raise ProviderError(
            f"Ingram shows no subscription {subscription_id} in our orders for {domain}",
            status=404,
            code="SubscriptionNotFound",
        )

    # -- Provider port: customers ------------------------------------------------------------

    async def domain_available(self, domain: str) -> bool:
        # No domain check in XI: free unless an order of ours already names it.
        return not await self._search(endCustomerOrderNumber=tenant_key(domain))

    async def find_customer_by_domain(self, domain: str) -> ProviderCustomer | None:
        wanted = domain.strip().lower()
        orders = await self._tenant_orders(wanted)
        company = next((o.end_user_info.company_name for o in orders if o.end_user_info), None)
        return ProviderCustomer(
            tenant_id=wanted,
            domain=wanted,
            company_name=company or "",
            has_reseller_relationship=bool(orders),
        )

    async def create_customer(self, customer: NewCustomer, *, request_id: str) -> CreatedCustomer:
        # XI creates the tenant with its first order (place_order's new_tenant): nothing to send.
        domain = customer.domain.strip().lower()
        return CreatedCustomer(
            tenant_id=domain, domain=domain, admin_username=f"admin@{domain}", admin_password=None
        )

    async def relationship_request_link(self) -> str:
        return self._invitation

    # -- Provider port: orders ---------------------------------------------------------------

    async def _vendor_fields(self, lines: list[OrderLine], correlation: str) -> dict[str, str]:
        """Ask which NCE fields Ingram needs for these products; keep the prefilled ones."""
        request = VendorRequiredInfoRequest(
            products=[
                VendorRequiredInfoRequestProductsInner(vendor_part_number=line.offer_id)
                for line in lines
            ]
        )
        response = await self._call(
            "POST",
            VENDOR_INFO_PATH,
            correlation=correlation,
            json=request.to_dict(),
        )
        try:
            products = [VendorRequiredInforesponseInner.from_dict(p) for p in response.json()]
        except (ValueError, ValidationError, TypeError, AttributeError):
            raise ProviderError(
                f"Ingram POST {VENDOR_INFO_PATH} answered a body that is not a list of "
                "VendorRequiredInforesponseInner",
                status=502,
                code="InvalidResponse",
            ) from None
        prefilled: dict[str, str] = {}
        for product in products:
            for message in product.response_messages or []:
                if (message.type or "").lower() == "error":
                    raise ProviderError(
                        f"Ingram refuses {product.vendor_part_number}: {message.message}",
                        status=400,
                        code=message.id or "VendorRequiredInfo",
                    )
            names = set()
            for attribute in product.vri_additional_attributes or []:
                names.add(attribute.attribute_name)
                if attribute.attribute_name in ECHOED_FIELDS and attribute.attribute_value:
                    prefilled[attribute.attribute_name] = attribute.attribute_value
            if TENANT_PREFERENCE not in names:
                raise ProviderError(
                    f"Ingram asks no Microsoft tenant for {product.vendor_part_number}: "
                    "not a New Commerce subscription product",
                    status=400,
                    code="NotASubscriptionProduct",
                )
        return prefilled

    def _order_request(
        self,
        domain: str,
        lines: list[OrderLine],
        request_id: str,
        prefilled: dict[str, str],
        new_tenant: NewCustomer | None,
    ) -> OrderCreateV7Request:
        fields: dict[str, str] = {**prefilled, "microsoft_domain": domain_prefix(domain)}
        end_user = None
        if new_tenant is not None:
            address = new_tenant.address
            state = mx_state_code(address.state) if address.country == "MX" else None
            fields |= {
                TENANT_PREFERENCE: "new",
                "effective_address": address.line1,
                "effective_city": address.city,
                "effective_state": state or address.state,
                "effective_postal_code": address.postal_code,
                "effective_country": address.country,
                "address_approved_by_user": "approved",
                # The client's contact accepts the Microsoft Customer Agreement with the order.
                "mca_acceptance": "yes",
                "first_name_agreement": new_tenant.first_name,
                "last_name_agreement": new_tenant.last_name,
                "email_address_agreement": new_tenant.email,
                "agreement_date": datetime.now(UTC).strftime("%m-%d-%Y"),
            }
            end_user = OrderCreateV7RequestEndUserInfo(
                contact=f"{new_tenant.first_name} {new_tenant.last_name}",
                company_name=_clip(new_tenant.company_name, 40),
                address_line1=_clip(address.line1, 70),
                address_line2=_clip(address.line2, 70),
                city=_clip(address.city, 25),
                state=_clip(state or address.state, 3),
                postal_code=_clip(address.postal_code, 10),
                country_code=address.country,
                email=new_tenant.email,
            )
        else:
            # Ours already: the client accepted us and Ingram (confirmed before we order).
            fields |= {TENANT_PREFERENCE: "existing", "relationship_url": "yes"}
        fields[ATTESTATION] = "attestation_accepted"
        return OrderCreateV7Request(
            customer_order_number=customer_order_number(request_id),
            end_customer_order_number=tenant_key(domain),
            notes=f"Microsoft tenant {domain}",
            end_user_info=end_user,
            vmf_additional_attributes=[_attribute(k, v) for k, v in fields.items()],
            lines=[
                OrderCreateV7RequestLinesInner(
                    customer_line_number=str(line.line_number + 1),
                    vendor_part_number=line.offer_id,
                    quantity=line.quantity,
                    notes=line.friendly_name,
                    vmf_additional_attributes_lines=[
                        OrderCreateV7RequestLinesInnerVmfAdditionalAttributesLinesInner(
                            attribute_name=name, attribute_value=value
                        )
                        for name, value in (
                            ("term_duration", line.term_duration),
                            ("billing_cycle", line.billing_cycle),
                        )
                    ],
                )
                for line in lines
            ],
        )

    async def place_order(
        self,
        tenant_id: str,
        lines: list[OrderLine],
        *,
        request_id: str,
        new_tenant: NewCustomer | None = None,
    ) -> PlacedOrder:
        domain = tenant_id.strip().lower()
        po_number = customer_order_number(request_id)
        placed = await self._search(cancelled=True, customerOrderNumber=po_number)
        if not placed:
            correlation = correlation_id(request_id)
            if new_tenant is not None and await self._search(
                endCustomerOrderNumber=tenant_key(domain)
            ):
                new_tenant = None  # an earlier order of ours created it already
            prefilled = await self._vendor_fields(lines, correlation)
            request = self._order_request(domain, lines, request_id, prefilled, new_tenant)
            response = await self._call(
                "POST", ORDERS_V7_PATH, correlation=correlation, json=request.to_dict()
            )
            confirmation = self._parse(OrderCreateV7Response201, response, "POST", ORDERS_V7_PATH)
            log.info(
                "xvantage.order_submitted",
                confirmation=confirmation.confirmation_number,
                customer_order_number=po_number,
            )
            placed = await self._search(cancelled=True, customerOrderNumber=po_number)
            if not placed:
                raise OrderInProgress(
                    f"Ingram accepted order {po_number} (confirmation "
                    f"{confirmation.confirmation_number}) and is processing it"
                )
        return await self._placed(placed[0], po_number)

    async def _placed(self, order_number: str, reference: str) -> PlacedOrder:
        order = await self._details(order_number)
        status = (order.order_status or "").lower()
        if status in _CANCELLED_ORDER:
            raise ProviderError(
                f"Ingram refused order {reference} ({order_number}): {order.notes or status}",
                status=422,
                code="OrderRejected",
            )
        lines = order.lines or []
        if not lines or not all(_has_subscription(line) for line in lines):
            raise OrderInProgress(f"Ingram order {order_number} has no subscriptions yet")
        return PlacedOrder(
            order_id=order_number,
            status=status or "processing",
            subscriptions=[_line_subscription(order_number, line) for line in lines],
        )

    async def get_order(self, tenant_id: str, order_id: str) -> PlacedOrder:
        return await self._placed(order_id, order_id)

    async def subscription_provisioning(
        self, tenant_id: str, subscription_id: str
    ) -> ProvisioningState:
        sub = await self._subscription(tenant_id, subscription_id)
        if sub.status is SubscriptionStatus.PENDING:
            return ProvisioningState.PENDING
        if sub.status in (SubscriptionStatus.NONE, SubscriptionStatus.DELETED):
            return ProvisioningState.FAILED
        return ProvisioningState.SUCCESS

    async def list_subscriptions(self, tenant_id: str) -> list[ProviderSubscription]:
        return await self._tenant_subscriptions(tenant_id)

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> ProviderSubscription:
        return await self._subscription(tenant_id, subscription_id)

    # -- Provider port: what XI does not offer -----------------------------------------------

    async def set_subscription_status(
        self,
        tenant_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        request_id: str,
    ) -> ProviderSubscription:
        verb = "suspend" if status is SubscriptionStatus.SUSPENDED else "reactivate"
        raise ProviderNotOffered(
            f"{verb} subscription {subscription_id}",
            PROVIDER_NAME,
            way_out="ops do it in Ingram's marketplace",
        )

    async def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, request_id: str
    ) -> ProviderSubscription:
        raise ProviderNotOffered(
            f"change the seats of subscription {subscription_id} to {quantity}",
            PROVIDER_NAME,
            way_out="ops do it in Ingram's marketplace",
        )

    async def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, request_id: str
    ) -> ProviderSubscription:
        raise ProviderNotOffered(
            f"cancel subscription {subscription_id}",
            PROVIDER_NAME,
            way_out="ops do it in Ingram's marketplace",
        )

    async def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, request_id: str
    ) -> ProviderSubscription:
        raise ProviderNotOffered(
            f"turn auto-renew {'on' if enabled else 'off'} for subscription {subscription_id}",
            PROVIDER_NAME,
            way_out="ops do it in Ingram's marketplace",
        )


__all__ = [
    "OrderInProgress",
    "XvantageClient",
    "correlation_id",
    "customer_order_number",
    "invitation_link",
    "tenant_key",
]
