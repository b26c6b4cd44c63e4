"""The provider port: what the orchestration needs from Microsoft's commerce side.

Implemented by PartnerCenterClient (real API or local sandbox). Every write takes a
`request_id`, sent as `MS-RequestId`: the same logical request reuses it on retry, so the
provider does the work once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, SecretStr


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


PERMANENT_CONFLICTS = frozenset({"DomainAlreadyExists"})


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
    admin_password: SecretStr  # only ever held inside an activity: vault it, never return it


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


class ProviderSubscription(_Model):
    subscription_id: str
    offer_id: str
    quantity: int
    status: SubscriptionStatus
    order_id: str | None = None
    term_duration: str | None = None
    billing_cycle: str | None = None
    auto_renew_enabled: bool = True
    creation_date: datetime | None = None
    commitment_end_date: datetime | None = None


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
        self, tenant_id: str, lines: list[OrderLine], *, request_id: str
    ) -> PlacedOrder:
        """POST /v1/customers/{tenant}/orders (idempotent on MS-RequestId)."""

    async def get_order(self, tenant_id: str, order_id: str) -> PlacedOrder:
        """GET /v1/customers/{tenant}/orders/{order}."""

    async def subscription_provisioning(
        self, tenant_id: str, subscription_id: str
    ) -> ProvisioningState:
        """GET /v1/customers/{tenant}/subscriptions/{sub}/provisioningstatus."""

    async def list_subscriptions(self, tenant_id: str) -> list[ProviderSubscription]:
        """GET /v1/customers/{tenant}/subscriptions."""

    async def set_subscription_status(
        self,
        tenant_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        request_id: str,
    ) -> ProviderSubscription:
        """PATCH /v1/customers/{tenant}/subscriptions/{sub} with status suspended | active."""


__all__ = [
    "CreatedCustomer",
    "CustomerAddress",
    "NewCustomer",
    "OrderLine",
    "PlacedOrder",
    "Provider",
    "ProviderCustomer",
    "ProviderError",
    "ProviderSubscription",
    "ProvisioningState",
    "SubscriptionStatus",
]
