"""The registry: tenants, orders, licenses, credentials, e-mail ledger and renewal charges.

SQLAlchemy 2 + Alembic, on SQLite (default, development) or PostgreSQL (production). `Registry`
(repository.py) is the one facade over one store per aggregate (orders.py, tenants.py,
subscriptions.py, credentials.py, notifications.py, charges.py, seat_changes.py, api_keys.py,
idempotency.py).
"""

from csp_core.registry.api_keys import (
    API_KEY_PREFIX,
    ApiKeyRecord,
    ApiKeyScope,
    NewApiKey,
    api_key_id,
    is_key_id,
)
from csp_core.registry.charges import ChargeContext, ChargeRecord, PaymentRecord
from csp_core.registry.credentials import credentials_ref
from csp_core.registry.engine import make_engine, normalize_url
from csp_core.registry.errors import (
    REGISTRY_OUTAGES,
    ApiKeyRefused,
    ChargeAlreadyPaid,
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    LicenseTransferRefused,
    OrderConflict,
    RegistryError,
    TenantConflict,
    UnknownApiKey,
    UnknownCharge,
    UnknownOrder,
    UnknownSubscription,
    UnknownTenant,
)
from csp_core.registry.idempotency import IdempotencyRecord
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
    "API_KEY_PREFIX",
    "REGISTRY_OUTAGES",
    "ApiKeyRecord",
    "ApiKeyRefused",
    "ApiKeyScope",
    "AdoptedSubscription",
    "ChargeAlreadyPaid",
    "ChargeContext",
    "ChargeRecord",
    "CredentialsAlreadyRevealed",
    "CredentialsNotFound",
    "IdempotencyRecord",
    "LicenseRow",
    "LicenseTransferRefused",
    "NewApiKey",
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
    "UnknownApiKey",
    "UnknownCharge",
    "UnknownOrder",
    "UnknownSubscription",
    "UnknownTenant",
    "api_key_id",
    "credentials_ref",
    "is_key_id",
    "make_engine",
    "normalize_url",
]
