"""Orders in Ingram's shapes, both ways, as pure functions over the SDK's models: the NCE
vendor fields Ingram prefills, the v7 order request (a new tenant's address and MCA acceptance,
or an existing tenant's authorization), and an order's lines as the port's subscriptions.

SDK 1.3.0 vs the current spec: the v7 request model has header `vmfAdditionalAttributes`
(name/value) but not the spec's newer line-level `vriAdditionalAttributes`, `planid` or
`subscriptionPeriod`; the NCE fields therefore go in the header attributes, and the term and
billing cycle in each line's `vmfAdditionalAttributesLines` (`term_duration`, `billing_cycle`:
our names, UNVERIFIED against Ingram). In the SDK, vendorrequiredinfo's `vriAdditionalAttributes`
is a flat list of attributes (the spec's example nests them in per-vendor containers), and the
nested `choices` keep only `string`: the top-level attributes are read by name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from xi.sdk.resellers.models import (
    OrderCreateV7Request,
    OrderCreateV7RequestEndUserInfo,
    OrderCreateV7RequestLinesInner,
    OrderCreateV7RequestLinesInnerVmfAdditionalAttributesLinesInner,
    OrderCreateV7RequestVmfAdditionalAttributesInner,
    OrderDetailB2BLinesInner,
    VendorRequiredInforesponseInner,
)

from csp_core.orders.mexico import mx_state_code
from csp_core.providers.port import (
    NewCustomer,
    OrderLine,
    ProviderError,
    ProviderSubscription,
    SubscriptionStatus,
)
from csp_core.providers.xvantage.ids import customer_order_number, domain_prefix, tenant_key

# Between polls of an order Ingram is still processing (the activity's backoff adds to it).
ORDER_POLL_SECONDS = 5.0

# Microsoft NCE vendor fields (vendorrequiredinfo's vriAdditionalAttributes).
TENANT_PREFERENCE = "tenant_preference"
ATTESTATION = "partner_on_record_attestation_accepted"
ECHOED_FIELDS = ("tier1_mpn", "indirect_reseller_domain")  # prefilled by Ingram: sent back

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
CANCELLED_ORDER = frozenset({"canceled", "cancelled"})


class OrderInProgress(ProviderError):
    """Ingram accepted the order and is still processing it: look again later (transient)."""

    def __init__(self, message: str, *, retry_after_seconds: float = ORDER_POLL_SECONDS) -> None:
        super().__init__(
            message, status=202, code="ORDER_IN_PROGRESS", retry_after_seconds=retry_after_seconds
        )

    @property
    def transient(self) -> bool:
        return True


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


def prefilled_fields(products: list[VendorRequiredInforesponseInner]) -> dict[str, str]:
    """The NCE fields Ingram prefilled for these products (sent back with the order). A product
    Ingram refuses, or one that asks no Microsoft tenant, is a business refusal."""
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


def order_request(
    domain: str,
    lines: list[OrderLine],
    request_id: str,
    prefilled: dict[str, str],
    new_tenant: NewCustomer | None,
) -> OrderCreateV7Request:
    """The v7 order: a new tenant (`new_tenant`: its address, the contact's MCA acceptance)
    or an existing one the client authorized us on, with our PO and the tenant's key."""
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


def line_subscription(order_number: str, line: OrderDetailB2BLinesInner) -> ProviderSubscription:
    """An order line's subscription (serviceContractInfo) as the port's subscription."""
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


def has_subscription(line: OrderDetailB2BLinesInner) -> bool:
    contract = line.service_contract_info
    return bool(contract and contract.subscriptions and contract.subscriptions.subscription_id)
