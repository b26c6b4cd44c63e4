"""The Ingram Xvantage client implementing the provider port (see the package docstring for how
the port maps onto Ingram's API)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx
import structlog
from pydantic import SecretStr, ValidationError
from xi.sdk.resellers.models import (
    OrderCreateV7Response201,
    OrderDetailB2B,
    OrderSearchResponse,
    VendorRequiredInfoRequest,
    VendorRequiredInfoRequestProductsInner,
    VendorRequiredInforesponseInner,
)

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
from csp_core.providers.xvantage.auth import TokenCache
from csp_core.providers.xvantage.errors import parse_answer
from csp_core.providers.xvantage.ids import (
    correlation_id,
    customer_order_number,
    invitation_link,
    tenant_key,
)
from csp_core.providers.xvantage.orders import (
    CANCELLED_ORDER,
    OrderInProgress,
    has_subscription,
    line_subscription,
    order_request,
    prefilled_fields,
)
from csp_core.providers.xvantage.wire import XvantageWire

log = structlog.get_logger(__name__)

PROVIDER_NAME = "Ingram Micro Xvantage"
VENDOR_INFO_PATH = "/resellers/v7/vendorrequiredinfo"
ORDERS_V7_PATH = "/resellers/v7/orders"
ORDER_SEARCH_PATH = "/resellers/v6/orders/search"
ORDER_DETAILS_PATH = "/resellers/v6.1/orders/{}"


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
        self._tokens = TokenCache(client_id, client_secret)
        self._wire = XvantageWire(
            base_url,
            tokens=self._tokens,
            headers={
                "IM-CustomerNumber": customer_number,
                "IM-CountryCode": country_code,
                "IM-SenderID": sender_id,
            },
            timeout=timeout,
            transport=transport,
        )
        self._invitation = invitation_link(partner_tenant_id, partner_mpn_id, ingram_tenant_id)

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this client fetched (one, until a token expires or is refused)."""
        return self._tokens.fetched

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- orders of ours ----------------------------------------------------------------------

    async def _search(self, *, cancelled: bool = False, **params: str) -> list[str]:
        """Ingram order numbers of our orders matching the search (cancelled ones too only
        when asked: a refused order proves nothing about a tenant)."""
        response = await self._wire.call(
            "GET", ORDER_SEARCH_PATH, params={**params, "pageSize": 100}
        )
        if response.status_code == 204:
            return []
        found = parse_answer(OrderSearchResponse, response, "GET", ORDER_SEARCH_PATH)
        return [
            order.ingram_order_number
            for order in found.orders or []
            if order.ingram_order_number
            and (cancelled or (order.order_status or "").lower() not in CANCELLED_ORDER)
        ]

    async def _details(self, order_number: str) -> OrderDetailB2B:
        path = ORDER_DETAILS_PATH.format(order_number)
        response = await self._wire.call("GET", path)
        return parse_answer(OrderDetailB2B, response, "GET", path)

    async def _tenant_orders(self, domain: str) -> list[OrderDetailB2B]:
        numbers = await self._search(endCustomerOrderNumber=tenant_key(domain))
        return [await self._details(number) for number in numbers]

    async def _tenant_subscriptions(self, domain: str) -> list[ProviderSubscription]:
        return [
            line_subscription(order.ingram_order_number or "", line)
            for order in await self._tenant_orders(domain)
            for line in order.lines or []
            if has_subscription(line)
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
        response = await self._wire.call(
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
        return prefilled_fields(products)

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
            request = order_request(domain, lines, request_id, prefilled, new_tenant)
            response = await self._wire.call(
                "POST", ORDERS_V7_PATH, correlation=correlation, json=request.to_dict()
            )
            confirmation = parse_answer(OrderCreateV7Response201, response, "POST", ORDERS_V7_PATH)
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
        if status in CANCELLED_ORDER:
            raise ProviderError(
                f"Ingram refused order {reference} ({order_number}): {order.notes or status}",
                status=422,
                code="OrderRejected",
            )
        lines = order.lines or []
        if not lines or not all(has_subscription(line) for line in lines):
            raise OrderInProgress(f"Ingram order {order_number} has no subscriptions yet")
        return PlacedOrder(
            order_id=order_number,
            status=status or "processing",
            subscriptions=[line_subscription(order_number, line) for line in lines],
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
