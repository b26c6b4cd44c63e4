"""How the order activities translate between the order, the provider port and the registry."""

from __future__ import annotations

from csp_core.orders.models import Order, OrderItem
from csp_core.orders.provisioning import TenantOrigin, TenantRef
from csp_core.providers.port import CustomerAddress, NewCustomer
from csp_core.registry import TenantRecord


def item_of(order: Order, offer_id: str) -> OrderItem | None:
    """The order line of a subscription the provider answered (its offer id with or without
    the availability segment)."""
    product_sku = ":".join(offer_id.split(":")[:2])
    return next((item for item in order.items if item.product_sku == product_sku), None)


def new_customer(order: Order) -> NewCustomer:
    customer = order.customer
    return NewCustomer(
        domain=order.domain,
        company_name=customer.company_name,
        first_name=customer.contact.first_name,
        last_name=customer.contact.last_name,
        email=str(customer.contact.email),
        address=CustomerAddress(
            line1=customer.address.line1,
            line2=customer.address.line2,
            city=customer.address.city,
            state=customer.address.state,
            postal_code=customer.address.postal_code,
            country=customer.address.country,
        ),
    )


def tenant_ref(record: TenantRecord, credentials_ref: str | None = None) -> TenantRef:
    return TenantRef(
        domain=record.domain,
        tenant_id=record.tenant_id,
        origin=TenantOrigin(record.origin),
        credentials_ref=credentials_ref,
    )
