"""The seat changes ledger: one row per accepted seat change, with its proration.

A row is written in the same transaction that records the new quantity, once per the caller's
change id (a retry after a lost answer finds it and changes nothing). Its `proration_amount`
(signed: a credit when seats were removed) is billed by the next renewal charge recorded for
the subscription, which sets `billed_period` (ledger.py). A charge that credits take below
zero is 0.00 and carries the rest in a `carry-over:<period>` row of its own, which the
following charge bills like any other row.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from csp_core.registry.errors import UnknownSubscription
from csp_core.registry.ledger import CARRY_OVER_PREFIX, lock_subscription, record_change
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import SeatChange, Subscription
from csp_core.renewals.billing import BillingSpan


class SeatChangeRecord(Record):
    id: int
    subscription_id: str
    change_id: str
    changed_at: datetime
    seats_before: int
    seats_after: int
    unit_price: Decimal
    prorated_until: datetime
    proration_amount: Decimal
    billed_period: str | None
    created_at: datetime

    @property
    def is_carry_over(self) -> bool:
        """A credit carried from a charge that credits took below zero, not a seat change."""
        return self.change_id.startswith(CARRY_OVER_PREFIX)

    @property
    def carried_from(self) -> str | None:
        """The period whose charge could not use this credit (carry-over rows only)."""
        return self.change_id.removeprefix(CARRY_OVER_PREFIX) if self.is_carry_over else None


class SeatChangeStore(Store):
    """The seat changes ledger (its rows are billed by ChargeStore.bill_period)."""

    def record_seat_change(
        self,
        subscription_id: str,
        change_id: str,
        changed_at: datetime,
        seats_after: int,
        span: BillingSpan,
    ) -> tuple[SeatChangeRecord, bool]:
        """Record an accepted seat change and the new quantity, in one transaction, once per
        `change_id`. Returns (row, newly_recorded).

        The seats before are the quantity recorded until now; the proration runs from
        `changed_at` to the end of `span` (the billing period the change falls in) at the
        subscription's unit price (ledger.record_change says what happens to charges already
        recorded for later periods). Asked again with the same change id, nothing changes and
        the first row is returned (even if the quantity has moved on since)."""
        if seats_after < 1:
            raise ValueError(f"quantity must be at least 1 (got {seats_after})")
        if change_id.startswith(CARRY_OVER_PREFIX):
            raise ValueError(f"change id {change_id!r}: {CARRY_OVER_PREFIX}* is reserved")
        with self._tx(write=True) as session:
            sub = lock_subscription(session, subscription_id)
            known = self._seat_change(session, subscription_id, change_id)
            if known is not None:
                return SeatChangeRecord.model_validate(known), False
            record_change(session, self._insert, sub, change_id, changed_at, seats_after, span)
            row = self._seat_change(session, subscription_id, change_id)
            assert row is not None
            return SeatChangeRecord.model_validate(row), True

    @staticmethod
    def _seat_change(session: Session, subscription_id: str, change_id: str) -> SeatChange | None:
        return session.scalars(
            select(SeatChange)
            .where(SeatChange.subscription_id == subscription_id, SeatChange.change_id == change_id)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def list_seat_changes(self, subscription_id: str) -> list[SeatChangeRecord]:
        """A subscription's ledger: every seat change (and carried credit), oldest first."""
        with self._tx() as session:
            if session.get(Subscription, subscription_id) is None:
                raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
            rows = session.scalars(
                select(SeatChange)
                .where(SeatChange.subscription_id == subscription_id)
                .order_by(SeatChange.changed_at, SeatChange.id)
            )
            return [SeatChangeRecord.model_validate(row) for row in rows]

    def list_billed_seat_changes(self, period: str | None = None) -> list[SeatChangeRecord]:
        """The rows renewal charges billed (those of one period when given): the proration
        lines shown under each charge."""
        stmt = select(SeatChange).where(SeatChange.billed_period.is_not(None))
        if period is not None:
            stmt = stmt.where(SeatChange.billed_period == period)
        with self._tx() as session:
            rows = session.scalars(
                stmt.order_by(SeatChange.billed_period, SeatChange.changed_at, SeatChange.id)
            )
            return [SeatChangeRecord.model_validate(row) for row in rows]
