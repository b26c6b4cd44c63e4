"""The registry: tenants, orders, licenses, credentials, e-mail ledger and renewal charges.

SQLAlchemy 2 + Alembic, on SQLite (default, development) or PostgreSQL (production).
"""

from csp_core.registry.errors import (
    ChargeAlreadyPaid,
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    LicenseTransferRefused,
    OrderConflict,
    RegistryError,
    TenantConflict,
    UnknownCharge,
    UnknownOrder,
    UnknownSubscription,
    UnknownTenant,
)
from csp_core.registry.repository import (
    ChargeContext,
    ChargeRecord,
    LicenseRow,
    NewSubscription,
    NotificationRecord,
    NotificationStatus,
    OrderRecord,
    Registry,
    SubscriptionRecord,
    SubscriptionStatus,
    TenantOrigin,
    TenantRecord,
    credentials_ref,
    make_engine,
    normalize_url,
)

__all__ = [
    "ChargeAlreadyPaid",
    "ChargeContext",
    "ChargeRecord",
    "CredentialsAlreadyRevealed",
    "CredentialsNotFound",
    "LicenseRow",
    "LicenseTransferRefused",
    "NewSubscription",
    "NotificationRecord",
    "NotificationStatus",
    "OrderConflict",
    "OrderRecord",
    "Registry",
    "RegistryError",
    "SubscriptionRecord",
    "SubscriptionStatus",
    "TenantConflict",
    "TenantOrigin",
    "TenantRecord",
    "UnknownCharge",
    "UnknownOrder",
    "UnknownSubscription",
    "UnknownTenant",
    "credentials_ref",
    "make_engine",
    "normalize_url",
]
