"""The registry: which tenants, orders, licenses, credentials, e-mails and renewal charges exist.

One facade, `Registry`, over one store per aggregate (orders, tenants, subscriptions,
credentials, the e-mail ledger, renewal charges, the seat changes ledger, HTTP API keys and
Idempotency-Keys), each in its own
module with its records.

Activities call it through `asyncio.to_thread`, so each method runs its own short transaction on
its own session (the engine is thread-safe) and returns immutable records, never ORM objects.
Every write is idempotent: repeating a call with the same arguments after a crash neither
duplicates nor fails. Races are settled by the database (INSERT ... ON CONFLICT, conditional
UPDATE ... WHERE ... RETURNING), identically on SQLite and PostgreSQL. RETURNING rather than
rowcount: psycopg reports no rowcount for INSERT ... ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csp_core.registry.api_keys import ApiKeyStore
from csp_core.registry.charges import ChargeStore
from csp_core.registry.credentials import CredentialStore
from csp_core.registry.engine import make_engine
from csp_core.registry.idempotency import IdempotencyStore
from csp_core.registry.migrate import upgrade
from csp_core.registry.notifications import NotificationStore
from csp_core.registry.orders import OrderStore
from csp_core.registry.seat_changes import SeatChangeStore
from csp_core.registry.subscriptions import SubscriptionStore
from csp_core.registry.tenants import TenantStore

if TYPE_CHECKING:
    from csp_core.settings import Settings


class Registry(
    OrderStore,
    TenantStore,
    SubscriptionStore,
    CredentialStore,
    NotificationStore,
    ChargeStore,
    SeatChangeStore,
    ApiKeyStore,
    IdempotencyStore,
):
    """Thread-safe access to the registry database. One session and transaction per call."""

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> Registry:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Registry:
        return cls.from_url(settings.database_url, migrate=migrate)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        # render_as_string hides the password by default.
        return f"Registry({self.engine.url!r})"
