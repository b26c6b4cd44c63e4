"""The registry schema (SQLAlchemy 2 typed declarative). Alembic migrations create it.

Datetimes are stored as UTC and always read back timezone-aware (SQLite keeps no offset, so
`UTCDateTime` restores it). Amounts are `Numeric(12, 2)` read back as `Decimal` with 2 places.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CENT = Decimal("0.01")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Normalize to aware UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: pass a timezone-aware value")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE on PostgreSQL; UTC text on SQLite; aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite's DATETIME drops the offset; store the UTC wall time explicitly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """NUMERIC(12, 2), exact on both engines.

    SQLite has no decimal type: SQLAlchemy would round-trip through float and warn. Binding the
    value as text and quantizing on the way out keeps cents exact (12 digits fit a double).
    """

    impl = Numeric(12, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Numeric(12, 2, asdecimal=False))
        return dialect.type_descriptor(Numeric(12, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(CENT)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(CENT)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money()}


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("origin IN ('created', 'linked')", name="origin"),)

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), unique=True)
    company_name: Mapped[str] = mapped_column(String(200))
    reseller_id: Mapped[str] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class TenantReseller(Base):
    """The resellers a tenant belongs to: the one whose order created or linked it, and every
    reseller whose client later accepted them as partner. Another reseller's order for the
    tenant waits for that acceptance; it never reuses the tenant silently."""

    __tablename__ = "tenant_resellers"

    domain: Mapped[str] = mapped_column(ForeignKey("tenants.domain"), primary_key=True)
    reseller_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # How the reseller came to hold it: created | linked | accepted.
    via: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (CheckConstraint("tenant_mode IN ('create', 'link')", name="tenant_mode"),)

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    reseller_id: Mapped[str] = mapped_column(String(64), index=True)
    # The reseller's contact as given on the order: renewal e-mails go there.
    reseller_name: Mapped[str | None] = mapped_column(String(200))
    reseller_email: Mapped[str | None] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255), index=True)
    tenant_mode: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(40))
    stage_detail: Mapped[str | None] = mapped_column(Text)
    provider_order_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Subscription(Base):
    """A license line. Its tenant never changes (a database trigger enforces it)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("term IN ('P1M', 'P1Y', 'P3Y')", name="term"),
        CheckConstraint("billing_cycle IN ('monthly', 'annual')", name="billing_cycle"),
        CheckConstraint(
            "status IN ('pending', 'active', 'suspended', 'cancelled', 'expired')", name="status"
        ),
    )

    subscription_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_domain: Mapped[str] = mapped_column(ForeignKey("tenants.domain"), index=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.order_id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    term: Mapped[str] = mapped_column(String(8))
    billing_cycle: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="MXN", server_default="MXN")
    status: Mapped[str] = mapped_column(String(16))
    activated_at: Mapped[datetime | None]
    # The current term as the provider dates it (unknown for rows recorded before 0006).
    term_started_at: Mapped[datetime | None]
    term_ends_at: Mapped[datetime | None]
    auto_renew: Mapped[bool] = mapped_column(server_default=true())
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SeatChange(Base):
    """One accepted seat change, once per caller's change id, with the prorated amount of the
    rest of the billing period it happened in; the next renewal charge bills it."""

    __tablename__ = "seat_changes"
    __table_args__ = (
        UniqueConstraint("subscription_id", "change_id"),
        Index("ix_seat_changes_subscription_id_billed_period", "subscription_id", "billed_period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.subscription_id"))
    change_id: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime]
    seats_before: Mapped[int] = mapped_column(Integer)
    seats_after: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]
    prorated_until: Mapped[datetime]
    proration_amount: Mapped[Decimal]
    billed_period: Mapped[str | None] = mapped_column(String(7))
    created_at: Mapped[datetime]


class Credentials(Base):
    """Generated tenant admin credentials; the password only as a Fernet token."""

    __tablename__ = "credentials"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    admin_username: Mapped[str] = mapped_column(String(320))
    password_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    revealed_at: Mapped[datetime | None]


class Notification(Base):
    """E-mail ledger, one row per notice key: claimed (pending) before sending, then sent or
    undeliverable. A pending row is sent again by the next attempt (at least once; the key fixes
    the Message-ID, so a duplicate is recognisable); a sent row is never sent again."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'undeliverable')", name="status"),
        Index("ix_notifications_status_claimed_at", "status", "claimed_at"),
    )

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(128), index=True)
    period: Mapped[str | None] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16), server_default="sent")
    claimed_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    undeliverable_at: Mapped[datetime | None]
    undeliverable_reason: Mapped[str | None] = mapped_column(String(500))


class RenewalCharge(Base):
    __tablename__ = "renewal_charges"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period"),
        Index("ix_renewal_charges_period_status_id", "period", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.subscription_id"))
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="MXN", server_default="MXN")
    status: Mapped[str] = mapped_column(String(16))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    due_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    payment_reference: Mapped[str | None] = mapped_column(String(128))
    paid_amount: Mapped[Decimal | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RenewalPayment(Base):
    """One payment towards a renewal charge. A charge is settled when its payments add up to
    its amount; the same reference for the same charge is the same payment (recorded once)."""

    __tablename__ = "renewal_payments"
    __table_args__ = (UniqueConstraint("charge_id", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("renewal_charges.id"))
    reference: Mapped[str] = mapped_column(String(128))
    amount: Mapped[Decimal]
    paid_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class ApiKey(Base):
    """An HTTP API caller's key: only its SHA-256 digest is kept (the key is shown once). A
    reseller's key acts for that reseller only; an ops key for everyone."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('reseller', 'ops')", name="scope"),
        CheckConstraint(
            "(scope = 'reseller' AND reseller_id IS NOT NULL) "
            "OR (scope = 'ops' AND reseller_id IS NULL)",
            name="scope_reseller",
        ),
        CheckConstraint("rate_per_minute IS NULL OR rate_per_minute > 0", name="rate_positive"),
    )

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    reseller_id: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    # Requests per minute for this key; NULL: the API's default (API_RATE_LIMIT_PER_MINUTE).
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """An HTTP caller's Idempotency-Key, once per scope (a subscription, or payments): the
    request it was first used for (as a digest) and, once it succeeded, its answer, which a
    repeat of the same request gets back as it was."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    # What the key was first used for, e.g. "PUT /v1/subscriptions/<id>/seats" (for refusals).
    request: Mapped[str] = mapped_column(String(300))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
