"""The registry: tenants, orders, licenses, credentials, e-mail ledger and renewal charges.

SQLAlchemy 2 + Alembic, on SQLite (default, development) or PostgreSQL (production). `Registry`
(repository.py) is the one facade over one store per aggregate (orders.py, tenants.py,
subscriptions.py, credentials.py, notifications.py, charges.py, seat_changes.py).
"""

from csp_core.registry.charges import ChargeContext, ChargeRecord, PaymentRecord
from csp_core.registry.credentials import credentials_ref
from csp_core.registry.engine import make_engine, normalize_url
from csp_core.registry.errors import (
    REGISTRY_OUTAGES,
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
from csp_core.registry.notifications import NotificationRecord, NotificationStatus
from csp_core.registry.orders import OrderRecord
from csp_core.registry.repository import Registry
from csp_core.registry.seat_changes import SeatChangeRecord
from csp_core.registry.subscriptions import (
    AdoptedSubscription,
    LicenseRow,
    NewSubscription,
    SoldPrice,
    SubscriptionRecord,
    SubscriptionStatus,
)
from csp_core.registry.tenants import TenantOrigin, TenantRecord

__all__ = [
    "REGISTRY_OUTAGES",
    "AdoptedSubscription",
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
    "PaymentRecord",
    "Registry",
    "RegistryError",
    "SeatChangeRecord",
    "SoldPrice",
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
