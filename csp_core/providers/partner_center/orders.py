"""New Commerce purchases: catalog availability → cart → checkout, and order status.

- The catalog item id is three-part, PRODUCT:SKU:AVAILABILITY. An order line that names only
  PRODUCT:SKU gets its availability from GET /v1/customers/{id}/products/{p}/skus/{s}/
  availabilities (the customer's country and segment): the first purchasable one offering the
  line's term (and billing cycle, where the term names one).
- POST /v1/customers/{id}/carts {PartnerOnRecordAttestationAccepted, lineItems[{id,
  catalogItemId, quantity, billingCycle, termDuration, friendlyName}]}, then POST
  .../carts/{cartId}/checkout; the CartCheckoutResult's orders (and orderErrors) answer.
- 400019 (the availability went stale between lookup and checkout): look it up again and
  buy once more. 13605 (no Microsoft Customer Agreement): confirm the client's acceptance and
  buy once more. A tenant we created gets its MCA confirmed before its first order.
- MS-RequestId: each step of the logical request has its own id derived from the caller's
  (sub_request_id), the same on every retry, so a cart is created, and checked out, once.
"""

from __future__ import annotations

from typing import Any

from csp_core.providers.partner_center.customers import (
    MCA_MISSING,
    AgreementContact,
    CustomersMixin,
)
from csp_core.providers.partner_center.resources import subscription
from csp_core.providers.partner_center.transport import log, seg, sub_request_id
from csp_core.providers.port import (
    NewCustomer,
    OrderLine,
    PlacedOrder,
    ProviderError,
    ProviderSubscription,
    ProvisioningState,
)

# Checkout found an availability that is no longer current (developer/error-codes: 404).
STALE_AVAILABILITY = "400019"
NO_AVAILABILITY = "NO_AVAILABILITY"
# The checkout refusals that one more attempt fixes, after doing what they ask.
_RETRIED_ONCE = (MCA_MISSING, STALE_AVAILABILITY)
_ORDER_ERROR_STATUS = {MCA_MISSING: 403, STALE_AVAILABILITY: 404}
# More than one order per checkout (order groups): their ids, joined, are the order id.
_ORDER_ID_SEPARATOR = ","


def _cycle(value: Any) -> str:
    return str(value or "").replace("_", "").lower()


def _offers(availability: dict[str, Any], line: OrderLine) -> bool:
    if availability.get("isPurchasable") is False:
        return False
    for term in availability.get("terms") or []:
        if not isinstance(term, dict) or term.get("duration") != line.term_duration:
            continue
        cycle = term.get("billingCycle")
        if cycle is None or _cycle(cycle) == _cycle(line.billing_cycle):
            return True
    return False


class OrdersMixin(CustomersMixin):
    async def catalog_item_id(self, tenant_id: str, line: OrderLine, *, fresh: bool) -> str:
        """The line's three-part catalog item id: as given, or (fresh) looked up."""
        parts = line.offer_id.split(":")
        if len(parts) == 3 and not fresh:
            return line.offer_id
        product, sku = parts[0], parts[1] if len(parts) > 1 else ""
        path = (
            f"/v1/customers/{seg(tenant_id)}/products/{seg(product)}/skus/{seg(sku)}/availabilities"
        )
        data = await self._get_json(path)
        for availability in data.get("items") or []:
            if _offers(availability, line) and availability.get("catalogItemId"):
                return str(availability["catalogItemId"])
        raise ProviderError(
            f"Partner Center offers {product}:{sku} to this customer with no availability for "
            f"a {line.term_duration} term billed {line.billing_cycle}",
            status=400,
            code=NO_AVAILABILITY,
        )

    async def place_order(
        self,
        tenant_id: str,
        lines: list[OrderLine],
        *,
        request_id: str,
        new_tenant: NewCustomer | None = None,
    ) -> PlacedOrder:
        contact = (
            AgreementContact(new_tenant.first_name, new_tenant.last_name, new_tenant.email)
            if new_tenant is not None
            else None
        )
        if contact is not None and not await self.has_agreement(tenant_id):
            # A tenant we created: its client accepted the MCA with the order.
            await self.confirm_agreement(
                tenant_id, contact, request_id=sub_request_id(request_id, "agreement")
            )
        items = [await self.catalog_item_id(tenant_id, line, fresh=False) for line in lines]
        retried: list[str] = []
        while True:
            attempt = "+".join(retried)
            try:
                orders = await self._buy(tenant_id, lines, items, request_id, attempt)
                break
            except ProviderError as err:
                if err.code not in _RETRIED_ONCE or err.code in retried:
                    raise
                retried.append(err.code)
                log.info("partner_center.checkout_retry", code=err.code, tenant_id=tenant_id)
            if retried[-1] == MCA_MISSING:
                await self.confirm_agreement(
                    tenant_id,
                    contact or await self.agreement_contact(tenant_id),
                    request_id=sub_request_id(request_id, f"agreement-{attempt}"),
                )
            else:
                items = [await self.catalog_item_id(tenant_id, line, fresh=True) for line in lines]
        order_id = _ORDER_ID_SEPARATOR.join(str(order["id"]) for order in orders)
        statuses = {str(order.get("status", "unknown")).lower() for order in orders}
        return PlacedOrder(
            order_id=order_id,
            status=statuses.pop() if len(statuses) == 1 else "pending",
            subscriptions=await self._order_subscriptions(tenant_id, order_id),
        )

    async def _buy(
        self,
        tenant_id: str,
        lines: list[OrderLine],
        items: list[str],
        request_id: str,
        attempt: str,
    ) -> list[dict[str, Any]]:
        """One cart with every line, checked out: the orders it made."""
        carts = f"/v1/customers/{seg(tenant_id)}/carts"
        body: dict[str, Any] = {
            "PartnerOnRecordAttestationAccepted": True,
            "lineItems": [
                {
                    "id": index,
                    "catalogItemId": item,
                    "quantity": line.quantity,
                    "billingCycle": line.billing_cycle,
                    "termDuration": line.term_duration,
                }
                | ({"friendlyName": line.friendly_name} if line.friendly_name else {})
                for index, (line, item) in enumerate(zip(lines, items, strict=True))
            ],
        }
        cart = await self._post_json(
            carts, body, request_id=sub_request_id(request_id, f"cart{attempt}")
        )
        for line_item in cart.get("lineItems") or []:
            error = line_item.get("error") if isinstance(line_item, dict) else None
            if error:
                code = str(error.get("errorCode") or "CartLineError")
                raise ProviderError(
                    f"Partner Center refused cart line {line_item.get('id')} "
                    f"({line_item.get('catalogItemId')}) [{code}]: "
                    f"{str(error.get('errorDescription') or '')[:200]}",
                    status=400,
                    code=code,
                )
        checkout = f"{carts}/{seg(str(cart['id']))}/checkout"
        result = await self._post_json(
            checkout, None, request_id=sub_request_id(request_id, f"checkout{attempt}")
        )
        errors = [e for e in result.get("orderErrors") or [] if isinstance(e, dict)]
        if errors:
            code = str(errors[0].get("code") or "OrderError")
            raise ProviderError(
                f"Partner Center checkout refused [{code}]: "
                f"{str(errors[0].get('description') or '')[:200]}",
                status=_ORDER_ERROR_STATUS.get(code, 400),
                code=code,
            )
        orders = [o for o in result.get("orders") or [] if isinstance(o, dict) and o.get("id")]
        if not orders:
            raise ProviderError(
                "Partner Center checked out the cart but answered no order",
                status=502,
                code="InvalidResponse",
            )
        return orders

    async def _order_subscriptions(
        self, tenant_id: str, order_id: str
    ) -> list[ProviderSubscription]:
        found: list[ProviderSubscription] = []
        for one in order_id.split(_ORDER_ID_SEPARATOR):
            data = await self._get_json(
                f"/v1/customers/{seg(tenant_id)}/subscriptions", {"order_id": one}
            )
            found += [subscription(item) for item in data.get("items") or []]
        return found

    async def get_order(self, tenant_id: str, order_id: str) -> PlacedOrder:
        statuses = set()
        for one in order_id.split(_ORDER_ID_SEPARATOR):
            order = await self._get_json(f"/v1/customers/{seg(tenant_id)}/orders/{seg(one)}")
            statuses.add(str(order.get("status", "unknown")).lower())
        return PlacedOrder(
            order_id=order_id,
            status=statuses.pop() if len(statuses) == 1 else "pending",
            subscriptions=await self._order_subscriptions(tenant_id, order_id),
        )

    async def subscription_provisioning(
        self, tenant_id: str, subscription_id: str
    ) -> ProvisioningState:
        path = (
            f"/v1/customers/{seg(tenant_id)}/subscriptions/{seg(subscription_id)}"
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


__all__ = ["NO_AVAILABILITY", "STALE_AVAILABILITY", "OrdersMixin"]
