"""The registry: which tenants, orders, licenses, credentials, e-mails and renewal charges exist.

Activities call it through `asyncio.to_thread`, so each method runs its own short transaction on
its own session (the engine is thread-safe) and returns immutable records, never ORM objects.
Every write is idempotent: repeating a call with the same arguments after a crash neither
duplicates nor fails. Races are settled by the database (INSERT ... ON CONFLICT, conditional
UPDATE ... WHERE ... RETURNING), identically on SQLite and PostgreSQL. RETURNING rather than
rowcount: psycopg reports no rowcount for INSERT ... ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from csp_core.orders.models import BillingCycle, TenantMode, Term
from csp_core.registry.errors import (
    ChargeAlreadyPaid,
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    LicenseTransferRefused,
    OrderConflict,
    TenantConflict,
    UnknownCharge,
    UnknownOrder,
    UnknownSubscription,
    UnknownTenant,
)
from csp_core.registry.tables import (
    Credentials,
    Notification,
    Order,
    RenewalCharge,
    RenewalPayment,
    Subscription,
    Tenant,
    TenantReseller,
    as_utc,
    utcnow,
)
from csp_core.renewals.billing import MAX_CHARGE_AMOUNT
from csp_core.stages import OrderStage, PaymentStatus

if TYPE_CHECKING:
    from csp_core.secrets import SecretVault
    from csp_core.settings import Settings

ONMICROSOFT_SUFFIX = ".onmicrosoft.com"
PERIOD_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
SETTLED = frozenset({PaymentStatus.PAID, PaymentStatus.REACTIVATED})
SQLITE_BUSY_TIMEOUT_MS = 30_000


class TenantOrigin(StrEnum):
    CREATED = "created"
    LINKED = "linked"


class NotificationStatus(StrEnum):
    """Where a notice stands in the e-mail ledger."""

    PENDING = "pending"  # claimed; not confirmed sent (an attempt failed, or is in flight, or died)
    SENT = "sent"  # the mail server took it
    UNDELIVERABLE = "undeliverable"  # the mail server refused it for good: ops has to act


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


# ---------------------------------------------------------------------------------------------
# Engine


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain `postgresql://` (and `postgres://`) use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for the registry. SQLite: parent dir created, WAL, foreign keys, real BEGINs.

    Connections opened with the execution option `csp_write=True` start SQLite transactions with
    BEGIN IMMEDIATE, so a read-then-write transaction waits for the write lock up front instead
    of failing with SQLITE_BUSY halfway (what pysqlite's deferred transactions would do).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Driver autocommit: SQLAlchemy emits BEGIN itself (below), DDL included.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("csp_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


# ---------------------------------------------------------------------------------------------
# Records (immutable, safe to hand across threads and to Temporal's pydantic converter)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class OrderRecord(_Record):
    order_id: str
    fingerprint: str
    reseller_id: str
    reseller_name: str | None = None
    reseller_email: str | None = None
    domain: str
    tenant_mode: TenantMode
    stage: OrderStage
    stage_detail: str | None
    provider_order_id: str | None
    created_at: datetime
    updated_at: datetime


class TenantRecord(_Record):
    domain: str
    tenant_id: str
    company_name: str
    reseller_id: str
    origin: TenantOrigin
    created_at: datetime


class NewSubscription(_Record):
    """A license line to record, as the provider returned it."""

    subscription_id: Annotated[str, Field(min_length=1, max_length=128)]
    sku: str
    product_name: str
    quantity: Annotated[int, Field(gt=0)]
    term: Term
    billing_cycle: BillingCycle
    unit_price: Decimal
    currency: str = "MXN"
    status: SubscriptionStatus = SubscriptionStatus.PENDING
    activated_at: datetime | None = None


class SubscriptionRecord(_Record):
    subscription_id: str
    tenant_domain: str
    order_id: str | None
    sku: str
    product_name: str
    quantity: int
    term: Term
    billing_cycle: BillingCycle
    unit_price: Decimal
    currency: str
    status: SubscriptionStatus
    activated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LicenseRow(_Record):
    """A license as ops see it: the subscription with its tenant."""

    domain: str
    tenant_id: str
    reseller_id: str
    subscription_id: str
    sku: str
    product_name: str
    quantity: int
    term: Term
    billing_cycle: BillingCycle
    status: SubscriptionStatus
    order_id: str | None
    activated_at: datetime | None


class NotificationRecord(_Record):
    """One notice in the e-mail ledger, as ops see it (no body, no secrets)."""

    key: str
    kind: str
    recipient: str
    order_id: str | None
    subscription_id: str | None
    period: str | None
    status: NotificationStatus
    claimed_at: datetime
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    undeliverable_at: datetime | None
    undeliverable_reason: str | None


class ChargeRecord(_Record):
    id: int
    subscription_id: str
    period: str
    amount: Decimal
    currency: str
    status: PaymentStatus
    escalation_level: int = 0
    due_at: datetime
    paid_at: datetime | None
    payment_reference: str | None
    paid_amount: Decimal | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status not in SETTLED

    @property
    def amount_paid(self) -> Decimal:
        return self.paid_amount or Decimal("0.00")

    @property
    def amount_due(self) -> Decimal:
        """What is still to pay (0 once settled; an overpayment does not go negative)."""
        if self.paid_at is not None:
            return Decimal("0.00")
        return max(self.amount - self.amount_paid, Decimal("0.00"))


class PaymentRecord(_Record):
    reference: str
    amount: Decimal
    paid_at: datetime
    recorded_at: datetime


class ChargeContext(_Record):
    subscription_id: str
    product_name: str
    quantity: int
    domain: str
    tenant_id: str
    company_name: str
    reseller_id: str
    reseller_name: str
    reseller_email: str | None
    order_id: str | None


def credentials_ref(order_id: str) -> str:
    """The opaque reference handed around instead of credentials (workflow history, e-mails)."""
    return f"cred-{order_id}"


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower()
    if not value.endswith(ONMICROSOFT_SUFFIX) or len(value) == len(ONMICROSOFT_SUFFIX):
        raise ValueError(f"tenant domain must be <prefix>{ONMICROSOFT_SUFFIX} (got {domain!r})")
    return value


def _short(text: str, limit: int = 500) -> str:
    """One line of at most `limit` characters (what the ledger's error columns hold)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _check_period(period: str) -> str:
    if not PERIOD_RE.match(period):
        raise ValueError(f"billing period must be YYYY-MM (got {period!r})")
    return period


# ---------------------------------------------------------------------------------------------
# Registry


class Registry:
    """Thread-safe access to the registry database. One session and transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(csp_write=True)
        self._dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> Registry:
        engine = make_engine(url)
        if migrate:
            from csp_core.registry.migrate import upgrade

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

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        with (
            Session(self._writer if write else self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def _insert(self, model: type[Any]) -> Any:
        return pg_insert(model) if self._dialect == "postgresql" else sqlite_insert(model)

    # -- orders ---------------------------------------------------------------------------------

    def record_order(
        self,
        order_id: str,
        fingerprint: str,
        reseller_id: str,
        domain: str,
        tenant_mode: TenantMode | str,
        reseller_name: str | None = None,
        reseller_email: str | None = None,
    ) -> OrderRecord:
        """Insert the order, or return it if already there with the same fingerprint."""
        now = utcnow()
        stmt = (
            self._insert(Order)
            .values(
                order_id=order_id,
                fingerprint=fingerprint,
                reseller_id=reseller_id,
                reseller_name=reseller_name,
                reseller_email=reseller_email,
                domain=domain.strip().lower(),
                tenant_mode=TenantMode(tenant_mode).value,
                stage=OrderStage.RECEIVED.value,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["order_id"])
        )
        with self._tx(write=True) as session:
            session.execute(stmt)
            order = session.get_one(Order, order_id)
            if order.fingerprint != fingerprint:
                raise OrderConflict(
                    f"order {order_id} is already recorded with different content; "
                    "an order id cannot be reused for another order"
                )
            return OrderRecord.model_validate(order)

    def get_order(self, order_id: str) -> OrderRecord | None:
        with self._tx() as session:
            order = session.get(Order, order_id)
            return OrderRecord.model_validate(order) if order else None

    def set_order_stage(
        self,
        order_id: str,
        stage: OrderStage | str,
        detail: str | None = None,
        provider_order_id: str | None = None,
    ) -> OrderRecord:
        """Set the stage and its detail (None clears it); provider_order_id is only ever set."""
        values: dict[str, Any] = {
            "stage": OrderStage(stage).value,
            "stage_detail": detail,
            "updated_at": utcnow(),
        }
        if provider_order_id is not None:
            values["provider_order_id"] = provider_order_id
        with self._tx(write=True) as session:
            result = session.execute(
                update(Order)
                .where(Order.order_id == order_id)
                .values(**values)
                .returning(Order.order_id),
                execution_options={"synchronize_session": False},
            )
            if result.first() is None:
                raise UnknownOrder(f"order {order_id} is not recorded")
            return OrderRecord.model_validate(session.get_one(Order, order_id))

    # -- tenants --------------------------------------------------------------------------------

    def record_tenant(
        self,
        domain: str,
        tenant_id: str,
        company_name: str,
        reseller_id: str,
        origin: TenantOrigin | str,
    ) -> TenantRecord:
        """Bind a domain to a provider tenant id, once. Re-recording the same pair is a no-op."""
        domain = normalize_domain(domain)
        stmt = (
            self._insert(Tenant)
            .values(
                domain=domain,
                tenant_id=tenant_id,
                company_name=company_name,
                reseller_id=reseller_id,
                origin=TenantOrigin(origin).value,
                created_at=utcnow(),
            )
            # No target: the domain (pk) and the tenant id (unique) are both checked below.
            .on_conflict_do_nothing()
        )
        with self._tx(write=True) as session:
            session.execute(stmt)
            tenant = session.get(Tenant, domain)
            if tenant is not None and tenant.tenant_id == tenant_id:
                self._add_owner(session, domain, tenant.reseller_id, tenant.origin)
            if tenant is None:
                other = session.scalars(select(Tenant).where(Tenant.tenant_id == tenant_id)).one()
                raise TenantConflict(
                    f"tenant id {tenant_id} is already registered as {other.domain}; "
                    f"it cannot also be {domain}"
                )
            if tenant.tenant_id != tenant_id:
                raise TenantConflict(
                    f"domain {domain} is already bound to tenant id {tenant.tenant_id}; "
                    f"refusing to bind it to {tenant_id}"
                )
            return TenantRecord.model_validate(tenant)

    def _add_owner(self, session: Session, domain: str, reseller_id: str, via: str) -> None:
        session.execute(
            self._insert(TenantReseller)
            .values(domain=domain, reseller_id=reseller_id, via=via, since=utcnow())
            .on_conflict_do_nothing(index_elements=["domain", "reseller_id"])
        )

    def add_tenant_reseller(self, domain: str, reseller_id: str, via: str = "accepted") -> None:
        """The reseller's client accepted them as partner on this tenant (idempotent)."""
        domain = normalize_domain(domain)
        with self._tx(write=True) as session:
            if session.get(Tenant, domain) is None:
                raise UnknownTenant(f"tenant {domain} is not recorded")
            self._add_owner(session, domain, reseller_id, via)

    def tenant_resellers(self, domain: str) -> set[str]:
        """The resellers that may transact on the tenant."""
        with self._tx() as session:
            rows = session.scalars(
                select(TenantReseller.reseller_id).where(
                    TenantReseller.domain == domain.strip().lower()
                )
            )
            return set(rows)

    def get_tenant(self, domain: str) -> TenantRecord | None:
        with self._tx() as session:
            tenant = session.get(Tenant, domain.strip().lower())
            return TenantRecord.model_validate(tenant) if tenant else None

    # -- subscriptions --------------------------------------------------------------------------

    def record_subscriptions(
        self, order_id: str | None, tenant_domain: str, lines: Iterable[NewSubscription]
    ) -> list[SubscriptionRecord]:
        """Record license lines in a tenant (all or none). Known ids are kept as first recorded."""
        tenant_domain = normalize_domain(tenant_domain)
        lines = list(lines)
        now = utcnow()
        with self._tx(write=True) as session:
            if session.get(Tenant, tenant_domain) is None:
                raise UnknownTenant(f"tenant {tenant_domain} is not recorded")
            if order_id is not None and session.get(Order, order_id) is None:
                raise UnknownOrder(f"order {order_id} is not recorded")
            records: list[SubscriptionRecord] = []
            for line in lines:
                activated_at = as_utc(line.activated_at) if line.activated_at else None
                session.execute(
                    self._insert(Subscription)
                    .values(
                        subscription_id=line.subscription_id,
                        tenant_domain=tenant_domain,
                        order_id=order_id,
                        sku=line.sku,
                        product_name=line.product_name,
                        quantity=line.quantity,
                        term=line.term.value,
                        billing_cycle=line.billing_cycle.value,
                        unit_price=line.unit_price,
                        currency=line.currency,
                        status=line.status.value,
                        activated_at=activated_at,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["subscription_id"])
                )
                sub = session.get_one(Subscription, line.subscription_id)
                if sub.tenant_domain != tenant_domain:
                    raise LicenseTransferRefused(
                        line.subscription_id, sub.tenant_domain, tenant_domain
                    )
                records.append(SubscriptionRecord.model_validate(sub))
            return records

    def set_subscription_status(
        self,
        subscription_id: str,
        status: SubscriptionStatus | str,
        activated_at: datetime | None = None,
    ) -> SubscriptionRecord:
        """Set the status; activated_at is set when given and otherwise kept."""
        values: dict[str, Any] = {
            "status": SubscriptionStatus(status).value,
            "updated_at": utcnow(),
        }
        if activated_at is not None:
            values["activated_at"] = as_utc(activated_at)
        with self._tx(write=True) as session:
            result = session.execute(
                update(Subscription)
                .where(Subscription.subscription_id == subscription_id)
                .values(**values)
                .returning(Subscription.subscription_id),
                execution_options={"synchronize_session": False},
            )
            if result.first() is None:
                raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
            return SubscriptionRecord.model_validate(session.get_one(Subscription, subscription_id))

    def move_subscription(self, subscription_id: str, new_domain: str) -> None:
        """Always refused: a license is bound to its tenant forever (the database agrees)."""
        current = self.get_subscription(subscription_id)
        raise LicenseTransferRefused(
            subscription_id,
            current.tenant_domain if current else None,
            new_domain.strip().lower(),
        )

    def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        with self._tx() as session:
            sub = session.get(Subscription, subscription_id)
            return SubscriptionRecord.model_validate(sub) if sub else None

    def list_subscriptions(
        self, status_in: Iterable[str], after: str = "", limit: int = 500
    ) -> list[SubscriptionRecord]:
        """Subscriptions with one of the statuses, keyset-paginated by subscription_id."""
        statuses = [SubscriptionStatus(s).value for s in status_in]
        with self._tx() as session:
            rows = session.scalars(
                select(Subscription)
                .where(Subscription.status.in_(statuses), Subscription.subscription_id > after)
                .order_by(Subscription.subscription_id)
                .limit(limit)
            )
            return [SubscriptionRecord.model_validate(row) for row in rows]

    def list_licenses(self, domain: str | None = None) -> list[LicenseRow]:
        stmt = select(Subscription, Tenant).join(
            Tenant, Tenant.domain == Subscription.tenant_domain
        )
        if domain is not None:
            stmt = stmt.where(Subscription.tenant_domain == domain.strip().lower())
        stmt = stmt.order_by(
            Subscription.tenant_domain, Subscription.sku, Subscription.subscription_id
        )
        with self._tx() as session:
            return [
                LicenseRow(
                    domain=tenant.domain,
                    tenant_id=tenant.tenant_id,
                    reseller_id=tenant.reseller_id,
                    subscription_id=sub.subscription_id,
                    sku=sub.sku,
                    product_name=sub.product_name,
                    quantity=sub.quantity,
                    term=Term(sub.term),
                    billing_cycle=BillingCycle(sub.billing_cycle),
                    status=SubscriptionStatus(sub.status),
                    order_id=sub.order_id,
                    activated_at=sub.activated_at,
                )
                for sub, tenant in session.execute(stmt)
            ]

    # -- credentials ----------------------------------------------------------------------------

    def store_credentials(
        self,
        order_id: str,
        domain: str,
        admin_username: str,
        admin_password: SecretStr,
        vault: SecretVault,
    ) -> str:
        """Store the admin credentials encrypted; returns their reference. The first store wins."""
        return self.store_sealed_credentials(
            order_id, domain, admin_username, vault.encrypt(admin_password)
        )

    def store_sealed_credentials(
        self, order_id: str, domain: str, admin_username: str, ciphertext: str
    ) -> str:
        """Store credentials already sealed by the vault (a Fernet token); the first store wins."""
        stmt = (
            self._insert(Credentials)
            .values(
                order_id=order_id,
                domain=domain.strip().lower(),
                admin_username=admin_username,
                password_ciphertext=ciphertext,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["order_id"])
        )
        with self._tx(write=True) as session:
            if session.get(Order, order_id) is None:
                raise UnknownOrder(f"order {order_id} is not recorded")
            session.execute(stmt)
        return credentials_ref(order_id)

    def credentials_stored(self, order_id: str) -> bool:
        with self._tx() as session:
            return session.get(Credentials, order_id) is not None

    def reveal_credentials(self, order_id: str, vault: SecretVault) -> tuple[str, SecretStr]:
        """Return (username, password) exactly once; later calls raise CredentialsAlreadyRevealed.

        The reveal is marked and the password decrypted in one transaction: if decryption
        fails (wrong key) nothing is consumed.
        """
        now = utcnow()
        with self._tx(write=True) as session:
            result = session.execute(
                update(Credentials)
                .where(Credentials.order_id == order_id, Credentials.revealed_at.is_(None))
                .values(revealed_at=now)
                .returning(Credentials.order_id),
                execution_options={"synchronize_session": False},
            )
            won = result.first() is not None
            row = session.get(Credentials, order_id)
            if row is None:
                raise CredentialsNotFound(f"no credentials are stored for order {order_id}")
            if not won:
                when = row.revealed_at.isoformat() if row.revealed_at else "earlier"
                raise CredentialsAlreadyRevealed(
                    f"the credentials of order {order_id} were already revealed ({when}); "
                    "they are shown only once: reset the admin password in the Microsoft 365 "
                    "admin center if it was lost"
                )
            return row.admin_username, vault.decrypt(row.password_ciphertext)

    # -- notifications --------------------------------------------------------------------------

    def begin_notification_attempt(
        self,
        key: str,
        kind: str,
        recipient: str,
        order_id: str | None = None,
        subscription_id: str | None = None,
        period: str | None = None,
    ) -> NotificationRecord:
        """Claim the notice (a new pending row) or count one more attempt on its pending row.

        Returns the row as it stands: the caller sends only while it is PENDING. A SENT or
        UNDELIVERABLE row is returned untouched.
        """
        now = utcnow()
        insert = self._insert(Notification).values(
            key=key,
            kind=kind,
            recipient=recipient,
            order_id=order_id,
            subscription_id=subscription_id,
            period=period,
            status=NotificationStatus.PENDING.value,
            claimed_at=now,
            attempts=1,
            last_attempt_at=now,
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["key"],
            set_={"attempts": Notification.attempts + 1, "last_attempt_at": now},
            where=Notification.status == NotificationStatus.PENDING.value,
        )
        with self._tx(write=True) as session:
            session.execute(stmt)
            return self._notification(session, key)

    def mark_notification_sent(self, key: str) -> NotificationRecord:
        """The mail server took the notice. Also settles an UNDELIVERABLE row (a later attempt
        got through after all); a SENT row keeps its first sent_at."""
        with self._tx(write=True) as session:
            session.execute(
                update(Notification)
                .where(
                    Notification.key == key,
                    Notification.status != NotificationStatus.SENT.value,
                )
                .values(status=NotificationStatus.SENT.value, sent_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
            return self._notification(session, key)

    def mark_notification_failed(
        self, key: str, error: str, *, permanent: bool
    ) -> NotificationRecord:
        """Record a failed attempt on a PENDING row. `permanent`: the mail server refused it for
        good, so the row becomes UNDELIVERABLE with `error` as the reason; otherwise it stays
        PENDING for the next attempt. `error` must be free of secrets (it is shown to ops)."""
        short = _short(error)
        now = utcnow()
        values: dict[str, Any] = {"last_error": short}
        if permanent:
            values |= {
                "status": NotificationStatus.UNDELIVERABLE.value,
                "undeliverable_at": now,
                "undeliverable_reason": short,
            }
        with self._tx(write=True) as session:
            session.execute(
                update(Notification)
                .where(
                    Notification.key == key,
                    Notification.status == NotificationStatus.PENDING.value,
                )
                .values(**values),
                execution_options={"synchronize_session": False},
            )
            return self._notification(session, key)

    def get_notification(self, key: str) -> NotificationRecord | None:
        with self._tx() as session:
            row = session.get(Notification, key)
            return NotificationRecord.model_validate(row) if row is not None else None

    def list_notifications(
        self,
        status: NotificationStatus | str | Iterable[NotificationStatus | str] | None = None,
        *,
        older_than: datetime | None = None,
        order_id: str | None = None,
        subscription_id: str | None = None,
        limit: int | None = None,
    ) -> list[NotificationRecord]:
        """Ledger rows, oldest claim first. For ops: `status=UNDELIVERABLE` lists what a person
        must follow up; `status=PENDING, older_than=now - 1h` lists notices still not delivered
        an hour after they were first tried (an SMTP outage being retried, or a stuck one)."""
        stmt = select(Notification).order_by(Notification.claimed_at, Notification.key)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(
                Notification.status.in_([NotificationStatus(s).value for s in wanted])
            )
        if older_than is not None:
            stmt = stmt.where(Notification.claimed_at < as_utc(older_than))
        if order_id is not None:
            stmt = stmt.where(Notification.order_id == order_id)
        if subscription_id is not None:
            stmt = stmt.where(Notification.subscription_id == subscription_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._tx() as session:
            return [NotificationRecord.model_validate(row) for row in session.scalars(stmt)]

    @staticmethod
    def _notification(session: Session, key: str) -> NotificationRecord:
        row = session.scalars(
            select(Notification)
            .where(Notification.key == key)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if row is None:
            raise LookupError(f"notification {key} is not in the ledger")
        return NotificationRecord.model_validate(row)

    # -- renewal charges ------------------------------------------------------------------------

    def upsert_charge(
        self, subscription_id: str, period: str, amount: Decimal, due_at: datetime
    ) -> ChargeRecord:
        """Create the period's charge; an open one takes the new amount/due date, a paid one
        never changes. An amount the NUMERIC(12, 2) column cannot hold is refused here, the
        same on SQLite (which would store it) as on PostgreSQL (which would fail)."""
        _check_period(period)
        if not (Decimal(amount).is_finite() and 0 <= Decimal(amount) <= MAX_CHARGE_AMOUNT):
            raise ValueError(f"amount: must be within 0..{MAX_CHARGE_AMOUNT} MXN (got {amount})")
        now = utcnow()
        insert = self._insert(RenewalCharge).values(
            subscription_id=subscription_id,
            period=period,
            amount=Decimal(amount),
            currency="MXN",
            status=PaymentStatus.PENDING.value,
            due_at=as_utc(due_at),
            created_at=now,
            updated_at=now,
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["subscription_id", "period"],
            set_={
                "amount": insert.excluded.amount,
                "due_at": insert.excluded.due_at,
                "updated_at": insert.excluded.updated_at,
            },
            where=(
                RenewalCharge.status.not_in([s.value for s in SETTLED])
                & (
                    RenewalCharge.amount.is_distinct_from(insert.excluded.amount)
                    | RenewalCharge.due_at.is_distinct_from(insert.excluded.due_at)
                )
            ),
        )
        with self._tx(write=True) as session:
            if session.get(Subscription, subscription_id) is None:
                raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
            session.execute(stmt)
            return ChargeRecord.model_validate(self._charge(session, subscription_id, period))

    @staticmethod
    def _charge(session: Session, subscription_id: str, period: str) -> RenewalCharge | None:
        return session.scalars(
            select(RenewalCharge)
            .where(RenewalCharge.subscription_id == subscription_id, RenewalCharge.period == period)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def _require_charge(self, session: Session, subscription_id: str, period: str) -> RenewalCharge:
        charge = self._charge(session, subscription_id, period)
        if charge is not None:
            return charge
        if session.get(Subscription, subscription_id) is None:
            raise UnknownSubscription(
                f"subscription {subscription_id} is not recorded (period {period})"
            )
        raise UnknownCharge(f"subscription {subscription_id} has no renewal charge for {period}")

    def get_charge(self, subscription_id: str, period: str) -> ChargeRecord | None:
        with self._tx() as session:
            charge = self._charge(session, subscription_id, period)
            return ChargeRecord.model_validate(charge) if charge else None

    def list_open_charges(
        self, period: str, after_id: int = 0, limit: int = 500
    ) -> list[ChargeRecord]:
        """Unsettled charges of a period, keyset-paginated by id (pass the last id seen)."""
        with self._tx() as session:
            rows = session.scalars(
                select(RenewalCharge)
                .where(
                    RenewalCharge.period == _check_period(period),
                    RenewalCharge.status.not_in([s.value for s in SETTLED]),
                    RenewalCharge.id > after_id,
                )
                .order_by(RenewalCharge.id)
                .limit(limit)
            )
            return [ChargeRecord.model_validate(row) for row in rows]

    def charge_context(self, subscription_id: str) -> ChargeContext:
        """Who and what a renewal charge is about: the subscription, its tenant and reseller."""
        with self._tx() as session:
            row = session.execute(
                select(Subscription, Tenant, Order)
                .join(Tenant, Tenant.domain == Subscription.tenant_domain)
                .outerjoin(Order, Order.order_id == Subscription.order_id)
                .where(Subscription.subscription_id == subscription_id)
            ).first()
            if row is None:
                raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
            sub, tenant, order = row
            return ChargeContext(
                subscription_id=sub.subscription_id,
                product_name=sub.product_name,
                quantity=sub.quantity,
                domain=tenant.domain,
                tenant_id=tenant.tenant_id,
                company_name=tenant.company_name,
                reseller_id=tenant.reseller_id,
                reseller_name=(order.reseller_name if order else None) or tenant.reseller_id,
                reseller_email=order.reseller_email if order else None,
                order_id=sub.order_id,
            )

    def list_charges(
        self, period: str | None = None, status: PaymentStatus | str | None = None
    ) -> list[ChargeRecord]:
        stmt = select(RenewalCharge).order_by(RenewalCharge.period, RenewalCharge.id)
        if period is not None:
            stmt = stmt.where(RenewalCharge.period == period)
        if status is not None:
            stmt = stmt.where(RenewalCharge.status == PaymentStatus(status).value)
        with self._tx() as session:
            return [ChargeRecord.model_validate(row) for row in session.scalars(stmt)]

    def set_charge_status(
        self,
        subscription_id: str,
        period: str,
        status: PaymentStatus | str,
        escalation_level: int | None = None,
    ) -> ChargeRecord:
        """Move a charge's status (and escalation level, when given). A settled (paid) charge
        is never moved back to an open status: a late reminder step cannot undo a payment; the
        current record is returned."""
        new = PaymentStatus(status)
        values: dict[str, Any] = {"status": new.value, "updated_at": utcnow()}
        if escalation_level is not None:
            values["escalation_level"] = escalation_level
        condition = [
            RenewalCharge.subscription_id == subscription_id,
            RenewalCharge.period == period,
        ]
        if new not in SETTLED:
            condition.append(RenewalCharge.status.not_in([s.value for s in SETTLED]))
        with self._tx(write=True) as session:
            session.execute(
                update(RenewalCharge).where(*condition).values(**values),
                execution_options={"synchronize_session": False},
            )
            return ChargeRecord.model_validate(
                self._require_charge(session, subscription_id, period)
            )

    def record_payment(
        self,
        subscription_id: str,
        period: str,
        reference: str,
        amount: Decimal | None = None,
        paid_at: datetime | None = None,
    ) -> tuple[ChargeRecord, bool]:
        """Record one payment towards the charge. Returns (charge, newly_recorded).

        `amount` defaults to what is still due. The same reference again changes nothing (even
        with another amount: a reference names one payment). The charge is settled (PAID, with
        the reference and paid_at of the payment that completed it, in payment-time order) once
        its payments add up to its amount; until then `paid_amount` shows the total so far. A
        new payment for a settled charge raises ChargeAlreadyPaid."""
        if amount is not None:
            amount = Decimal(amount)
            if not (amount.is_finite() and Decimal(0) < amount <= MAX_CHARGE_AMOUNT):
                raise ValueError(
                    f"amount: must be more than 0 and at most {MAX_CHARGE_AMOUNT} MXN "
                    f"(got {amount})"
                )
        when = as_utc(paid_at) if paid_at else utcnow()
        with self._tx(write=True) as session:
            charge = self._require_charge(session, subscription_id, period)
            # Serialize payments of one charge (PostgreSQL; SQLite's writer lock already does).
            session.execute(
                select(RenewalCharge.id).where(RenewalCharge.id == charge.id).with_for_update()
            )
            known = session.scalars(
                select(RenewalPayment.id).where(
                    RenewalPayment.charge_id == charge.id, RenewalPayment.reference == reference
                )
            ).first()
            if known is not None:
                return ChargeRecord.model_validate(charge), False
            if charge.paid_at is not None:
                raise ChargeAlreadyPaid(
                    f"the renewal charge of subscription {subscription_id} for {period} is "
                    f"already paid (reference {charge.payment_reference}); payment {reference} "
                    "was not applied"
                )
            due = charge.amount - (charge.paid_amount or Decimal(0))
            inserted = session.execute(
                self._insert(RenewalPayment)
                .values(
                    charge_id=charge.id,
                    reference=reference,
                    amount=amount if amount is not None else due,
                    paid_at=when,
                    recorded_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["charge_id", "reference"])
                .returning(RenewalPayment.id)
            ).first()
            if inserted is None:  # the same payment, recorded concurrently
                return ChargeRecord.model_validate(charge), False
            payments = session.scalars(
                select(RenewalPayment)
                .where(RenewalPayment.charge_id == charge.id)
                .order_by(RenewalPayment.paid_at, RenewalPayment.id)
            ).all()
            values: dict[str, Any] = {
                "paid_amount": sum((p.amount for p in payments), Decimal(0)),
                "updated_at": utcnow(),
            }
            running = Decimal(0)
            for payment in payments:
                running += payment.amount
                if running >= charge.amount:
                    values.update(
                        status=PaymentStatus.PAID.value,
                        paid_at=payment.paid_at,
                        payment_reference=payment.reference,
                    )
                    break
            session.execute(
                update(RenewalCharge).where(RenewalCharge.id == charge.id).values(**values),
                execution_options={"synchronize_session": False},
            )
            charge = self._require_charge(session, subscription_id, period)
            return ChargeRecord.model_validate(charge), True

    def list_payments(self, subscription_id: str, period: str) -> list[PaymentRecord]:
        """The payments recorded towards a charge, in payment-time order."""
        with self._tx() as session:
            charge = self._require_charge(session, subscription_id, period)
            rows = session.scalars(
                select(RenewalPayment)
                .where(RenewalPayment.charge_id == charge.id)
                .order_by(RenewalPayment.paid_at, RenewalPayment.id)
            )
            return [PaymentRecord.model_validate(row) for row in rows]
