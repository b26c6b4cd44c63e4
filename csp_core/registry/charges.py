"""Renewal charges and the payments recorded towards them.

A period's charge (`bill_period`) is the seats in force when the period starts × unit price,
plus the prorations of seat changes made before it starts that no other charge billed (the
seat changes ledger); those rows are marked billed by it in the same transaction (ledger.py).
Credits beyond the charge leave it at 0.00 and carry over to the next charge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from csp_core.calendar import parse_period
from csp_core.registry.errors import ChargeAlreadyPaid, UnknownCharge, UnknownSubscription
from csp_core.registry.ledger import (
    SETTLED,
    charge_row,
    check_amount,
    lock_subscription,
    lock_subscriptions,
    page_of_charges,
    price_charge,
    write_charge,
)
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import (
    Order,
    RenewalCharge,
    RenewalPayment,
    Subscription,
    Tenant,
    as_utc,
    utcnow,
)
from csp_core.renewals.billing import MAX_CHARGE_AMOUNT
from csp_core.stages import PaymentStatus

_GET_CHARGE = select(*RenewalCharge.__table__.c).where(
    RenewalCharge.subscription_id == bindparam("b_subscription_id"),
    RenewalCharge.period == bindparam("b_period"),
)


class ChargeRecord(Record):
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


class PaymentRecord(Record):
    reference: str
    amount: Decimal
    paid_at: datetime
    recorded_at: datetime


class ChargeContext(Record):
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


def _check_period(period: str) -> str:
    parse_period(period)
    return period


class ChargeStore(Store):
    """The renewal charges aggregate (with their payments)."""

    def upsert_charge(
        self, subscription_id: str, period: str, amount: Decimal, due_at: datetime
    ) -> ChargeRecord:
        """Create the period's charge with the given amount; an open one takes the new
        amount/due date, a paid one never changes. An amount the NUMERIC(12, 2) column cannot
        hold is refused. The renewal cycle uses `bill_period`, which prices it."""
        _check_period(period)
        check_amount(amount)
        with self._tx(write=True) as session:
            if session.get(Subscription, subscription_id) is None:
                raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
            write_charge(session, self._insert, subscription_id, period, amount, due_at)
            return ChargeRecord.model_validate(self._charge(session, subscription_id, period))

    def bill_period(
        self, subscription_id: str, period: str, starts_at: datetime, due_at: datetime
    ) -> ChargeRecord:
        """Record the charge of `period` (which starts at `starts_at`), priced from the ledger:
        the seats in force at `starts_at` × unit price, plus the unbilled prorations of seat
        changes made before `starts_at`, which are marked billed by this period in the same
        transaction. Below zero it is 0.00 and the rest is carried to the next charge.

        Idempotent: recorded again (a cycle re-run, a retried activity), an open charge comes
        out the same (plus any change that reached the ledger since with an earlier date); a
        settled one never changes and bills nothing."""
        _check_period(period)
        with self._tx(write=True) as session:
            sub = lock_subscription(session, subscription_id)
            charge = price_charge(session, self._insert, sub, period, starts_at, due_at)
            return ChargeRecord.model_validate(charge)

    def bill_periods(
        self,
        subscription_ids: Iterable[str],
        period: str,
        starts_at: datetime,
        due_at: datetime,
        on_error: Callable[[str, Exception], None],
    ) -> int:
        """`bill_period` for many subscriptions (the renewal cycle's page) in one transaction,
        a SAVEPOINT each: a charge that cannot be recorded is rolled back alone and handed to
        `on_error` (which raises to roll back the whole page instead), the others are kept.
        Returns how many were billed. One transaction per charge cost more than the charge."""
        _check_period(period)
        billed, ids = 0, list(subscription_ids)
        with self._tx(write=True) as session:
            # What each charge reads, read for the page in three statements (subscriptions
            # locked, their charges, their seat changes) instead of three per charge.
            subs = lock_subscriptions(session, ids)
            charges, ledgers = page_of_charges(session, ids, period)
            for subscription_id in ids:
                try:
                    with session.begin_nested():
                        if (sub := subs.get(subscription_id)) is None:
                            raise UnknownSubscription(
                                f"subscription {subscription_id} is not recorded"
                            )
                        read = (charges.get(subscription_id), ledgers.get(subscription_id, []))
                        price_charge(
                            session, self._insert, sub, period, starts_at, due_at,
                            read_back=False, read=read,
                        )  # fmt: skip
                    billed += 1
                except Exception as err:
                    on_error(subscription_id, err)
        return billed

    @staticmethod
    def _charge(session: Session, subscription_id: str, period: str) -> RenewalCharge | None:
        return charge_row(session, subscription_id, period)

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
        # A Core statement built once, no ORM session: every renewal workflow reads its charge
        # as it opens (find_payment), and the session cost more than the query.
        with self.engine.connect() as conn:
            row = conn.execute(
                _GET_CHARGE, {"b_subscription_id": subscription_id, "b_period": period}
            ).one_or_none()
            return ChargeRecord.model_validate(row) if row is not None else None

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
        found = self.charge_contexts([subscription_id])
        if subscription_id not in found:
            raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
        return found[subscription_id]

    def charge_contexts(self, subscription_ids: list[str]) -> dict[str, ChargeContext]:
        """`charge_context` of many subscriptions in one query (the renewal cycle's pages); a
        subscription that is not recorded (or has no tenant) is absent from the result."""
        if not subscription_ids:
            return {}
        columns = (
            Subscription.subscription_id,
            Subscription.product_name,
            Subscription.quantity,
            Subscription.order_id,
            Tenant.domain,
            Tenant.tenant_id,
            Tenant.company_name,
            Tenant.reseller_id,
            Order.reseller_name,
            Order.reseller_email,
        )
        found: dict[str, ChargeContext] = {}
        with self._tx() as session:
            for start in range(0, len(subscription_ids), 500):  # bound the IN list
                rows = session.execute(
                    select(*columns)
                    .join(Tenant, Tenant.domain == Subscription.tenant_domain)
                    .outerjoin(Order, Order.order_id == Subscription.order_id)
                    .where(Subscription.subscription_id.in_(subscription_ids[start : start + 500]))
                )
                for row in rows:
                    found[row.subscription_id] = ChargeContext(
                        subscription_id=row.subscription_id,
                        product_name=row.product_name,
                        quantity=row.quantity,
                        domain=row.domain,
                        tenant_id=row.tenant_id,
                        company_name=row.company_name,
                        reseller_id=row.reseller_id,
                        reseller_name=row.reseller_name or row.reseller_id,
                        reseller_email=row.reseller_email,
                        order_id=row.order_id,
                    )
        return found

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
