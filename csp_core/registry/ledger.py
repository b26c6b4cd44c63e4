"""How the seat changes ledger and the renewal charges meet, inside one transaction.

Session-level functions shared by the charge store (charges.py, `bill_period`) and the seat
change store (seat_changes.py, `record_seat_change`), so neither imports the other:

- a period's charge is the seats in force when the period starts × unit price, plus the
  prorations of seat changes made before it starts that no other charge billed; it marks them
  billed by its period. Below zero it is 0.00 and the rest is a `carry-over:<period>` row,
  billed by the next charge like any seat change;
- a seat change is prorated from its instant to the end of its billing period, plus whole
  periods whose charge was already settled at the old quantity; open charges of later periods
  (recorded early, e.g. by `csp renewals run` after day 26) are priced again at once.

Both lock the subscription row first, so a charge sees a change whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from csp_core.registry.errors import UnknownSubscription
from csp_core.registry.tables import RenewalCharge, SeatChange, Subscription, as_utc, utcnow
from csp_core.renewals.billing import (
    MAX_CHARGE_AMOUNT,
    BillingSpan,
    charge_amount,
    charge_total,
    period_start,
    prorate_seat_change,
)
from csp_core.stages import PaymentStatus

SETTLED = frozenset({PaymentStatus.PAID, PaymentStatus.REACTIVATED})
_SETTLED_VALUES = [s.value for s in SETTLED]

# Change ids under this prefix are the ledger's own carry-over rows, never a caller's change.
CARRY_OVER_PREFIX = "carry-over:"

# The engine's INSERT ... ON CONFLICT for a table (Store._insert).
Insert = Callable[[type[Any]], Any]


def carry_over_id(period: str) -> str:
    return f"{CARRY_OVER_PREFIX}{period}"


def check_amount(amount: Decimal) -> None:
    """An amount the NUMERIC(12, 2) column cannot hold is refused, the same on SQLite (which
    would store it) as on PostgreSQL (which would fail)."""
    if not (Decimal(amount).is_finite() and 0 <= Decimal(amount) <= MAX_CHARGE_AMOUNT):
        raise ValueError(f"amount: must be within 0..{MAX_CHARGE_AMOUNT} MXN (got {amount})")


def lock_subscription(session: Session, subscription_id: str) -> Subscription:
    """The subscription row, locked until the transaction ends (PostgreSQL; SQLite's write
    transactions are serialized already)."""
    sub = session.scalars(
        select(Subscription)
        .where(Subscription.subscription_id == subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if sub is None:
        raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
    return sub


def lock_subscriptions(session: Session, subscription_ids: list[str]) -> dict[str, Subscription]:
    """lock_subscription for a page of them, in one statement (those not recorded are absent)."""
    return {
        sub.subscription_id: sub
        for sub in session.scalars(
            select(Subscription)
            .where(Subscription.subscription_id.in_(subscription_ids))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def page_of_charges(
    session: Session, subscription_ids: list[str], period: str
) -> tuple[dict[str, RenewalCharge], dict[str, list[SeatChange]]]:
    """The period's charges and the seat changes ledgers (oldest first) of a page of locked
    subscriptions, in two statements: what price_charge reads of each, read for all at once."""
    charges = {
        charge.subscription_id: charge
        for charge in session.scalars(
            select(RenewalCharge)
            .where(
                RenewalCharge.subscription_id.in_(subscription_ids),
                RenewalCharge.period == period,
            )
            .execution_options(populate_existing=True)
        )
    }
    ledgers: dict[str, list[SeatChange]] = {}
    for row in session.scalars(
        select(SeatChange)
        .where(SeatChange.subscription_id.in_(subscription_ids))
        .order_by(SeatChange.subscription_id, SeatChange.changed_at, SeatChange.id)
    ):
        ledgers.setdefault(row.subscription_id, []).append(row)
    return charges, ledgers


def charge_row(session: Session, subscription_id: str, period: str) -> RenewalCharge | None:
    return session.scalars(
        select(RenewalCharge)
        .where(RenewalCharge.subscription_id == subscription_id, RenewalCharge.period == period)
        .execution_options(populate_existing=True)
    ).one_or_none()


def write_charge(
    session: Session,
    insert: Insert,
    subscription_id: str,
    period: str,
    amount: Decimal,
    due_at: datetime,
) -> None:
    """Create the period's charge; an open one takes the new amount and due date, a settled
    one never changes."""
    check_amount(amount)
    now = utcnow()
    session.connection().execute(
        _upsert_charge(insert),
        {
            "w_subscription_id": subscription_id,
            "w_period": period,
            "w_amount": Decimal(amount),
            "w_due_at": as_utc(due_at),
            "w_now": now,
        },
    )


_UPSERT_CHARGE: dict[type, Any] = {}


def _upsert_charge(insert: Insert) -> Any:
    """write_charge's INSERT ... ON CONFLICT, built once per dialect (the cycle bills every
    subscription: building it per charge cost more than running it)."""
    kind = type(insert(RenewalCharge))
    if (stmt := _UPSERT_CHARGE.get(kind)) is None:
        values = insert(RenewalCharge).values(
            subscription_id=bindparam("w_subscription_id"),
            period=bindparam("w_period"),
            amount=bindparam("w_amount"),
            currency="MXN",
            status=PaymentStatus.PENDING.value,
            due_at=bindparam("w_due_at"),
            created_at=bindparam("w_now"),
            updated_at=bindparam("w_now"),
        )
        stmt = _UPSERT_CHARGE[kind] = values.on_conflict_do_update(
            index_elements=["subscription_id", "period"],
            set_={
                "amount": values.excluded.amount,
                "due_at": values.excluded.due_at,
                "updated_at": values.excluded.updated_at,
            },
            where=(
                RenewalCharge.status.not_in(_SETTLED_VALUES)
                & (
                    RenewalCharge.amount.is_distinct_from(values.excluded.amount)
                    | RenewalCharge.due_at.is_distinct_from(values.excluded.due_at)
                )
            ),
        )
    return stmt


def _ledger(session: Session, subscription_id: str) -> list[SeatChange]:
    """A subscription's seat changes, oldest first (a handful per year: read them whole)."""
    return list(
        session.scalars(
            select(SeatChange)
            .where(SeatChange.subscription_id == subscription_id)
            .order_by(SeatChange.changed_at, SeatChange.id)
        )
    )


def seats_in_force(rows: list[SeatChange], sub: Subscription, at: datetime) -> int:
    """The seats a subscription had at `at`: what the first seat change at or after `at` started
    from, or the current quantity when there was none since. A change at exactly `at` is not
    in force yet then (its proration covers the whole period instead). Carry-overs (seats
    unchanged) say nothing about seats."""
    at = as_utc(at)
    for row in rows:  # oldest first
        if row.changed_at >= at and row.seats_before != row.seats_after:
            return row.seats_before
    return sub.quantity


def price_charge(
    session: Session,
    insert: Insert,
    sub: Subscription,
    period: str,
    starts_at: datetime,
    due_at: datetime,
    *,
    read_back: bool = True,
    read: tuple[RenewalCharge | None, list[SeatChange]] | None = None,
) -> RenewalCharge | None:
    """Record (or price again, while open) the charge of `period`, which starts at `starts_at`,
    and mark the seat changes it bills: those made before it starts and billed by no other
    charge (or by this one, when it is priced again). A settled charge is returned as it is.
    Returns the charge as recorded, or None without `read_back` (the cycle's billing counts
    its charges and needs no second read of each). `read`: its charge and ledger, read already
    with its page (page_of_charges)."""
    charge, ledger = (
        read if read is not None else (charge_row(session, sub.subscription_id, period), None)
    )
    if charge is not None and charge.status in _SETTLED_VALUES:
        return charge
    if ledger is None:
        ledger = _ledger(session, sub.subscription_id)
    seats = seats_in_force(ledger, sub, starts_at)
    rows = [
        row
        for row in ledger
        if row.changed_at < as_utc(starts_at) and row.billed_period in (None, period)
    ]
    amount, carried = charge_total(
        charge_amount(seats, sub.unit_price), (row.proration_amount for row in rows)
    )
    write_charge(session, insert, sub.subscription_id, period, amount, due_at)
    if unbilled := [row.id for row in rows if row.billed_period is None]:
        session.execute(
            update(SeatChange)
            .where(SeatChange.id.in_(unbilled), SeatChange.billed_period.is_(None))
            .values(billed_period=period),
            execution_options={"synchronize_session": False},
        )
    if carried or any(row.change_id == carry_over_id(period) for row in ledger):
        _carry_over(session, insert, sub, period, starts_at, seats, carried)
    if not read_back:
        return None
    charge = charge_row(session, sub.subscription_id, period)
    assert charge is not None
    return charge


def _carry_over(
    session: Session,
    insert: Insert,
    sub: Subscription,
    period: str,
    starts_at: datetime,
    seats: int,
    amount: Decimal,
) -> None:
    """Keep the credit a charge could not use (`amount` < 0) for the next charge, or drop a
    carry-over this period left earlier and no longer needs; a carry-over already billed by
    the next charge never changes."""
    key = carry_over_id(period)
    if amount >= 0:
        session.execute(
            delete(SeatChange).where(
                SeatChange.subscription_id == sub.subscription_id,
                SeatChange.change_id == key,
                SeatChange.billed_period.is_(None),
            )
        )
        return
    stmt = insert(SeatChange).values(
        subscription_id=sub.subscription_id,
        change_id=key,
        changed_at=as_utc(starts_at),  # billed by the first charge of a later period
        seats_before=seats,
        seats_after=seats,
        unit_price=sub.unit_price,
        prorated_until=as_utc(starts_at),
        proration_amount=amount,
        created_at=utcnow(),
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["subscription_id", "change_id"],
            set_={"proration_amount": stmt.excluded.proration_amount},
            where=SeatChange.billed_period.is_(None),
        )
    )


def record_change(
    session: Session,
    insert: Insert,
    sub: Subscription,
    change_id: str,
    changed_at: datetime,
    seats_after: int,
    span: BillingSpan,
) -> None:
    """Write a new seat change and the new quantity (the caller holds the subscription lock and
    knows the change id is new).

    Charges already recorded for periods after the change's billing period (`span`): each
    settled one in a row right after it was paid at the old quantity, so the change is
    prorated over it whole too; the open ones are priced again now, with the new seats."""
    later = session.scalars(
        select(RenewalCharge)
        .where(
            RenewalCharge.subscription_id == sub.subscription_id,
            RenewalCharge.period >= span.next_charge,  # YYYY-MM sorts as it reads
        )
        .order_by(RenewalCharge.period)
    ).all()
    settled = {charge.period for charge in later if charge.status in _SETTLED_VALUES}
    covered, whole = span, 0
    while covered.next_charge in settled:
        covered, whole = covered.following(), whole + 1
    now = utcnow()
    session.execute(
        insert(SeatChange).values(
            subscription_id=sub.subscription_id,
            change_id=change_id,
            changed_at=as_utc(changed_at),
            seats_before=sub.quantity,
            seats_after=seats_after,
            unit_price=sub.unit_price,
            prorated_until=as_utc(covered.ends_at),
            proration_amount=prorate_seat_change(
                sub.quantity, seats_after, sub.unit_price, changed_at, span, whole
            ),
            created_at=now,
        )
    )
    sub.quantity = seats_after
    sub.updated_at = now
    session.flush()
    for charge in later:
        if charge.status not in _SETTLED_VALUES:
            starts_at = period_start(charge.period, span.timezone)
            price_charge(session, insert, sub, charge.period, starts_at, charge.due_at)
