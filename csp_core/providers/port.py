"""The provider port: what the orchestration needs from Microsoft's commerce side.

Implemented by PartnerCenterClient (real API or local sandbox) and XvantageClient (Ingram
Micro's Xvantage Integration API, or the sandbox's Xvantage face). Every write takes a
`request_id`: the same logical request reuses it on retry, so the provider does the work once
(Partner Center's `MS-RequestId`; Xvantage's `IM-CorrelationID` is derived from it).

An operation a provider has no API for raises `ProviderNotOffered` (code
NOT_OFFERED_BY_PROVIDER, never transient): the caller must have a person do it, never treat it
as done.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, SecretStr


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


PERMANENT_CONFLICTS = frozenset({"DomainAlreadyExists"})
# The code of ProviderNotOffered: the provider has no API for the operation (ops must do it).
NOT_OFFERED_BY_PROVIDER = "NOT_OFFERED_BY_PROVIDER"

# Partner Center error codes (developer/error-codes) for the New Commerce refusals of a
# subscription change. All are 400s: business refusals, never worth retrying as they are.
QUANTITY_CANNOT_DECREASE = "800090"  # a decrease beyond what is still refundable
SUBSCRIPTION_SUSPENDED = "800091"  # any update of a suspended subscription
CANCELLATION_WINDOW_PASSED = "900117"  # status "deleted" after cancellationAllowedUntilDate
QUANTITY_WHILE_SUSPENDED = "2001"  # a quantity change while suspended
QUANTITY_OUT_OF_RANGE = "2002"  # below the offer's minimum (one seat) or above its maximum
SUBSCRIPTION_DELETED = "2011"  # a cancelled subscription cannot be updated
# The codes that mean "the 168-hour window is over" (900213/900214/900257 are the hour and
# day variants Partner Center also documents for cancel and seat reduction).
WINDOW_CLOSED_CODES = frozenset(
    {QUANTITY_CANNOT_DECREASE, CANCELLATION_WINDOW_PASSED, "900213", "900214", "900257"}
)


class ProviderError(Exception):
    """A provider answer that is not success. `transient` errors are worth retrying."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after_seconds = retry_after_seconds

    @property
    def transient(self) -> bool:
        # 429 throttling, 409 while a renewal is in progress, and server errors. A 409 that
        # names a permanent conflict (the domain is taken) is not worth retrying.
        if self.status == 409:
            return self.code not in PERMANENT_CONFLICTS
        return self.status in (408, 429) or self.status >= 500


class ProviderNotOffered(ProviderError):
    """The provider has no API for `operation`: a person has to do it (never transient).

    Raised, for instance, by the Ingram Xvantage adapter for seat changes, cancellation and
    suspension, which Ingram's reseller API does not offer."""

    def __init__(self, operation: str, provider: str, *, way_out: str | None = None) -> None:
        message = f"{provider} offers no API to {operation}"
        if way_out:
            message += f": {way_out}"
        # 501 Not Implemented: never retried, never a business refusal of the request itself.
        super().__init__(message, status=501, code=NOT_OFFERED_BY_PROVIDER)
        self.operation = operation
        self.provider = provider

    @property
    def transient(self) -> bool:
        return False


class CustomerAddress(_Model):
    line1: str
    line2: str | None = None
    city: str
    state: str
    postal_code: str
    country: str


class NewCustomer(_Model):
    """What Partner Center needs to create a customer tenant (POST /v1/customers)."""

    domain: str  # <prefix>.onmicrosoft.com
    company_name: str
    first_name: str
    last_name: str
    email: str
    address: CustomerAddress
    culture: str = "es-MX"
    language: str = "es"
    associated_partner_id: str | None = None  # the indirect reseller's tenant, when known


class ProviderCustomer(_Model):
    tenant_id: str
    domain: str
    company_name: str
    # True when the customer has accepted us (and the distributor) as partners, so we can
    # transact on its tenant.
    has_reseller_relationship: bool


class CreatedCustomer(_Model):
    tenant_id: str
    domain: str
    admin_username: str  # e.g. admin@contosomx.onmicrosoft.com
    # Only ever held inside an activity: vault it, never return it. None when the provider hands
    # the credentials to the client itself (Ingram: the tenant is created by the first order).
    admin_password: SecretStr | None


class OrderLine(_Model):
    line_number: int
    offer_id: str  # catalog item id, e.g. CFQ7TTC0LH18:0001
    quantity: int
    term_duration: str  # P1M | P1Y | P3Y
    billing_cycle: str  # monthly | annual
    friendly_name: str | None = None


class SubscriptionStatus(StrEnum):
    NONE = "none"
    ACTIVE = "active"
    PENDING = "pending"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    DISABLED = "disabled"
    DELETED = "deleted"


class RefundableSeats(_Model):
    """Seats that can still be removed for a refund, until `allowed_until` (exclusive).

    Partner Center's `refundableQuantity.details[]`: one entry per purchase, renewal or
    mid-term increase still inside its 168-hour window.
    """

    quantity: int
    allowed_until: datetime


class ProviderSubscription(_Model):
    subscription_id: str
    offer_id: str
    # The product as the provider names it (offerName, else the subscription's friendlyName).
    offer_name: str | None = None
    quantity: int
    status: SubscriptionStatus
    order_id: str | None = None
    term_duration: str | None = None
    billing_cycle: str | None = None
    auto_renew_enabled: bool = True
    creation_date: datetime | None = None
    # Start of the current term: the purchase, or the last renewal.
    effective_start_date: datetime | None = None
    commitment_end_date: datetime | None = None
    # The instant the subscription stops being cancellable (168 h after the purchase or the
    # last renewal); None when the provider does not say.
    cancellation_allowed_until: datetime | None = None
    refundable_quantity: tuple[RefundableSeats, ...] = ()

    @property
    def refundable_total(self) -> int:
        """How many seats can still be removed (Partner Center's totalQuantity)."""
        return sum(seats.quantity for seats in self.refundable_quantity)


class PlacedOrder(_Model):
    order_id: str
    status: str  # pending | completed | ...
    subscriptions: list[ProviderSubscription]


class ProvisioningState(StrEnum):
    SUCCESS = "success"
    PENDING = "pending"
    FAILED = "failed"


class Provider(Protocol):
    async def domain_available(self, domain: str) -> bool:
        """HEAD /v1/domains/{domain}: 404 means available, 200 means taken."""

    async def find_customer_by_domain(self, domain: str) -> ProviderCustomer | None:
        """GET /v1/customers?filter={Field: Domain, ...}."""

    async def create_customer(self, customer: NewCustomer, *, request_id: str) -> CreatedCustomer:
        """POST /v1/customers (idempotent on MS-RequestId)."""

    async def relationship_request_link(self) -> str:
        """GET /v1/customers/relationshiprequests: the link the client's admin accepts."""

    async def place_order(
        self,
        tenant_id: str,
        lines: list[OrderLine],
        *,
        request_id: str,
        new_tenant: NewCustomer | None = None,
    ) -> PlacedOrder:
        """POST /v1/customers/{tenant}/orders (idempotent on MS-RequestId).

        `new_tenant`: the customer behind a tenant that create_customer returned, for providers
        that create the tenant with its first order (Ingram Xvantage); Partner Center created
        it already and ignores it."""

    async def get_order(self, tenant_id: str, order_id: str) -> PlacedOrder:
        """GET /v1/customers/{tenant}/orders/{order}."""

    async def subscription_provisioning(
        self, tenant_id: str, subscription_id: str
    ) -> ProvisioningState:
        """GET /v1/customers/{tenant}/subscriptions/{sub}/provisioningstatus."""

    async def list_subscriptions(self, tenant_id: str) -> list[ProviderSubscription]:
        """GET /v1/customers/{tenant}/subscriptions: every subscription of the tenant, whoever
        bought it and whatever its status, with its real dates (effectiveStartDate,
        commitmentEndDate, cancellationAllowedUntilDate), auto-renew, quantity and offer."""

    async def set_subscription_status(
        self,
        tenant_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        request_id: str,
    ) -> ProviderSubscription:
        """PATCH /v1/customers/{tenant}/subscriptions/{sub} with status suspended | active."""

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> ProviderSubscription:
        """GET /v1/customers/{tenant}/subscriptions/{sub}."""

    async def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, request_id: str
    ) -> ProviderSubscription:
        """PATCH the subscription with a new `quantity` (the total seats, not a delta).

        Increases any time while active; decreases only down to what `refundableQuantity`
        still allows (800090), never below one (2002), never while suspended (2001).
        """

    async def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, request_id: str
    ) -> ProviderSubscription:
        """PATCH the subscription with status `deleted`: New Commerce cancellation, allowed
        only before `cancellationAllowedUntilDate` (900117) and not while suspended (800091)."""

    async def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, request_id: str
    ) -> ProviderSubscription:
        """PATCH the subscription with `autoRenewEnabled`; refused while suspended (800091)."""


__all__ = [
    "CANCELLATION_WINDOW_PASSED",
    "NOT_OFFERED_BY_PROVIDER",
    "PERMANENT_CONFLICTS",
    "QUANTITY_CANNOT_DECREASE",
    "QUANTITY_OUT_OF_RANGE",
    "QUANTITY_WHILE_SUSPENDED",
    "SUBSCRIPTION_DELETED",
    "SUBSCRIPTION_SUSPENDED",
    "WINDOW_CLOSED_CODES",
    "CreatedCustomer",
    "CustomerAddress",
    "NewCustomer",
    "OrderLine",
    "PlacedOrder",
    "Provider",
    "ProviderCustomer",
    "ProviderError",
    "ProviderNotOffered",
    "ProviderSubscription",
    "ProvisioningState",
    "RefundableSeats",
    "SubscriptionStatus",
]
