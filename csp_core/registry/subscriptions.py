"""Subscriptions (licenses): bound to their tenant forever."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from csp_core.orders.models import BillingCycle, Term
from csp_core.registry.errors import (
    LicenseTransferRefused,
    UnknownOrder,
    UnknownSubscription,
    UnknownTenant,
)
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import Order, Subscription, Tenant, as_utc, utcnow
from csp_core.registry.tenants import normalize_domain


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class NewSubscription(Record):
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


class AdoptedSubscription(NewSubscription):
    """A license the provider already had, recorded with no order, as the provider dates it."""

    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    term_started_at: datetime
    term_ends_at: datetime
    auto_renew: bool = True


class SoldPrice(Record):
    """The unit price a SKU was last sold at, and where."""

    unit_price: Decimal
    subscription_id: str
    tenant_domain: str
    order_id: str | None


class SubscriptionRecord(Record):
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
    term_started_at: datetime | None = None
    term_ends_at: datetime | None = None
    auto_renew: bool = True
    cancelled_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class LicenseRow(Record):
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
    # Whose license it is: the reseller of the order that bought it, or for one no order of ours
    # bought (adopted), the tenant's. `reseller_id` above is the tenant's (its first reseller).
    license_reseller_id: str


class SubscriptionStore(Store):
    """The subscriptions aggregate."""

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
                sub, _ = self._insert_line(session, tenant_domain, order_id, line, now)
                records.append(SubscriptionRecord.model_validate(sub))
            return records

    def _insert_line(
        self,
        session: Session,
        tenant_domain: str,
        order_id: str | None,
        line: NewSubscription,
        now: datetime,
        **extra: Any,
    ) -> tuple[Subscription, bool]:
        """Insert a license line unless its id is known (then kept as first recorded); True when
        inserted now. A known id bound to another tenant is refused: a license never moves."""
        inserted = session.execute(
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
                activated_at=as_utc(line.activated_at) if line.activated_at else None,
                created_at=now,
                updated_at=now,
                **extra,
            )
            .on_conflict_do_nothing(index_elements=["subscription_id"])
            .returning(Subscription.subscription_id)
        ).first()
        sub = session.get_one(Subscription, line.subscription_id)
        if sub.tenant_domain != tenant_domain:
            raise LicenseTransferRefused(line.subscription_id, sub.tenant_domain, tenant_domain)
        return sub, inserted is not None

    def adopt_subscription(
        self, tenant_domain: str, line: AdoptedSubscription
    ) -> tuple[SubscriptionRecord, bool]:
        """Record a license no order of ours recorded (order_id None), with its term and
        auto-renew; True when recorded now. A known one is kept as it is, except that a term it
        was recorded without (before 0006) is filled in; it never moves to another tenant."""
        tenant_domain = normalize_domain(tenant_domain)
        now = utcnow()
        term = {
            "term_started_at": as_utc(line.term_started_at),
            "term_ends_at": as_utc(line.term_ends_at),
        }
        with self._tx(write=True) as session:
            if session.get(Tenant, tenant_domain) is None:
                raise UnknownTenant(f"tenant {tenant_domain} is not recorded")
            sub, inserted = self._insert_line(
                session, tenant_domain, None, line, now, auto_renew=line.auto_renew, **term
            )
            if not inserted and sub.term_started_at is None:
                session.execute(
                    update(Subscription)
                    .where(
                        Subscription.subscription_id == line.subscription_id,
                        Subscription.term_started_at.is_(None),
                    )
                    .values(**term, updated_at=now),
                    execution_options={"synchronize_session": False},
                )
                session.refresh(sub)
            return SubscriptionRecord.model_validate(sub), inserted

    def last_sold_price(self, sku: str, tenant_domain: str | None = None) -> SoldPrice | None:
        """The unit price PRODUCT:SKU was last sold at (with or without an availability segment),
        on `tenant_domain` when given, else on any tenant."""
        same_sku = (Subscription.sku == sku) | Subscription.sku.startswith(
            f"{sku}:", autoescape=True
        )
        stmt = select(Subscription).where(same_sku)
        if tenant_domain is not None:
            stmt = stmt.where(Subscription.tenant_domain == tenant_domain.strip().lower())
        with self._tx() as session:
            sub = session.scalars(
                stmt.order_by(Subscription.created_at.desc(), Subscription.subscription_id).limit(1)
            ).first()
            if sub is None:
                return None
            return SoldPrice(
                unit_price=sub.unit_price,
                subscription_id=sub.subscription_id,
                tenant_domain=sub.tenant_domain,
                order_id=sub.order_id,
            )

    def set_subscription_status(
        self,
        subscription_id: str,
        status: SubscriptionStatus | str,
        activated_at: datetime | None = None,
        *,
        cancelled_at: datetime | None = None,
        only_from: Iterable[SubscriptionStatus | str] | None = None,
    ) -> SubscriptionRecord:
        """Set the status; activated_at and cancelled_at are set when given and otherwise kept.

        With `only_from`, a subscription in any other status is left as it is (a reactivation
        must not bring an expired or cancelled subscription back to active, say)."""
        values: dict[str, Any] = {"status": SubscriptionStatus(status).value}
        if activated_at is not None:
            values["activated_at"] = as_utc(activated_at)
        if cancelled_at is not None:
            values["cancelled_at"] = as_utc(cancelled_at)
        allowed = None if only_from is None else {SubscriptionStatus(s).value for s in only_from}
        return self._update_subscription(subscription_id, values, only_from=allowed)

    def record_activation(
        self,
        subscription_id: str,
        activated_at: datetime,
        *,
        seats: int,
        auto_renew: bool,
        term_started_at: datetime,
        term_ends_at: datetime,
    ) -> SubscriptionRecord:
        """An order's license became active: its status, seats, auto-renew and first term as the
        provider shows them, in one write (what `record_term` would write when its
        SubscriptionWorkflow starts, so the workflow need not)."""
        if seats < 1:
            raise ValueError(f"quantity must be at least 1 (got {seats})")
        if term_ends_at <= term_started_at:
            raise ValueError(f"a term ends after it starts ({term_started_at} .. {term_ends_at})")
        values: dict[str, Any] = {
            "status": SubscriptionStatus.ACTIVE.value,
            "activated_at": as_utc(activated_at),
            "quantity": seats,
            "auto_renew": auto_renew,
            "term_started_at": as_utc(term_started_at),
            "term_ends_at": as_utc(term_ends_at),
        }
        return self._update_subscription(subscription_id, values)

    def set_subscription_quantity(self, subscription_id: str, quantity: int) -> SubscriptionRecord:
        """Record the seats the provider now bills (the total, as it answered a change)."""
        if quantity < 1:
            raise ValueError(f"quantity must be at least 1 (got {quantity})")
        return self._update_subscription(subscription_id, {"quantity": quantity})

    def record_subscription_term(
        self, subscription_id: str, started_at: datetime, ends_at: datetime
    ) -> SubscriptionRecord:
        """Record the current term: its start (purchase or last renewal) and its last day."""
        if ends_at <= started_at:
            raise ValueError(f"a term ends after it starts ({started_at} .. {ends_at})")
        values = {"term_started_at": as_utc(started_at), "term_ends_at": as_utc(ends_at)}
        return self._update_subscription(subscription_id, values)

    def set_subscription_auto_renew(
        self, subscription_id: str, enabled: bool
    ) -> SubscriptionRecord:
        return self._update_subscription(subscription_id, {"auto_renew": enabled})

    def _update_subscription(
        self, subscription_id: str, values: dict[str, Any], only_from: set[str] | None = None
    ) -> SubscriptionRecord:
        # Activation and every change of a license run through here: one Core statement.
        columns = Subscription.__table__.c
        stmt = update(Subscription).where(Subscription.subscription_id == subscription_id)
        if only_from is not None:
            stmt = stmt.where(Subscription.status.in_(only_from))
        row = self._write_returning(
            stmt.values(**values, updated_at=utcnow()).returning(*columns),
            select(*columns).where(Subscription.subscription_id == subscription_id),
        )
        if row is None:
            raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
        return SubscriptionRecord.model_validate(row)

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

    def list_licenses(
        self, domain: str | None = None, reseller_id: str | None = None
    ) -> list[LicenseRow]:
        """Licenses with their tenant, optionally of one tenant and of one reseller's (the
        reseller whose order bought it; the tenant's for an adopted one)."""
        owner = func.coalesce(Order.reseller_id, Tenant.reseller_id)
        stmt = (
            select(Subscription, Tenant, owner)
            .join(Tenant, Tenant.domain == Subscription.tenant_domain)
            .outerjoin(Order, Order.order_id == Subscription.order_id)
        )
        if domain is not None:
            stmt = stmt.where(Subscription.tenant_domain == domain.strip().lower())
        if reseller_id is not None:
            stmt = stmt.where(owner == reseller_id)
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
                    license_reseller_id=license_reseller,
                )
                for sub, tenant, license_reseller in session.execute(stmt)
            ]
