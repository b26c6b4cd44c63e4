"""Renewal billing rules: which subscriptions owe a charge in a period, when it is due, what it
amounts to (seats, and the prorations of seat changes), and the escalation ladder before the
payment cutoff (day 26, 00:00 in the business time zone).

Pure functions of their inputs, so workflows use them deterministically and tests pin instants.

Seat changes and the charges ledger:
- A period's charge bills the seats in force when the period starts × unit price, for the whole
  period (monthly billing: the month; annual billing: the year from its renewal month), plus the
  prorations not billed yet of the seat changes made before the period starts.
- A seat change at instant t is prorated from t to the end of the billing period t falls in (the
  start of the next period that owes a charge): (seats_after - seats_before) × unit price ×
  (time left / the billing period's length), rounded to the cent. Positive for seats added (owed
  for the rest of a period already billed at the old quantity), negative for seats removed inside
  the 168 h window (a credit).
- A charge never goes below zero: credits beyond it carry over to the next charge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from csp_core.calendar import format_period, parse_period
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE, zone


class CutoffPolicy(StrEnum):
    NOTIFY = "notify"  # ops are alerted; the subscription keeps running
    SUSPEND = "suspend"  # suspended at the provider; a later payment reactivates it


class StepKind(StrEnum):
    NOTICE = "notice"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    FINAL_NOTICE = "final_notice"
    CUTOFF = "cutoff"


class LadderStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: StepKind
    at: datetime  # aware UTC
    level: int  # the EscalationLevel ops see once this step has run
    number: int = 0  # reminder number, for reminders


DEFAULT_CUTOFF_DAY = 26


# The longest a renewal may wait between its start and its beginning (RenewalPolicy.opening_delay).
MAX_OPENING_DELAY = timedelta(hours=6)


class RenewalPolicy(BaseModel):
    """The business settings of the renewal ladder, snapshotted into each workflow's input."""

    model_config = ConfigDict(frozen=True)

    timezone: str = DEFAULT_BUSINESS_TIMEZONE
    cutoff_day: Annotated[int, Field(ge=2, le=28)] = DEFAULT_CUTOFF_DAY
    reminder_days: list[int] = [15, 20]
    escalation_day: Annotated[int, Field(ge=1, le=28)] = 23
    final_notice_day: Annotated[int, Field(ge=1, le=28)] = 25
    step_time: time = time(9, 0)  # local time of day reminders and escalations go out
    cutoff_policy: CutoffPolicy = CutoffPolicy.NOTIFY
    # After the cutoff, how long a late payment is still awaited (reactivation window).
    late_payment_days: Annotated[int, Field(ge=0, le=365)] = 60
    # The cycle starts each payment workflow this long before it begins (its first task, the
    # opening notice): the month's fan-out of starts then runs at the server's start rate
    # instead of competing with the renewals it already started. 0 in policies snapshotted
    # before it (they began at once).
    opening_delay: Annotated[timedelta, Field(ge=timedelta(0), le=MAX_OPENING_DELAY)] = timedelta(0)

    @model_validator(mode="after")
    def _ladder_before_cutoff(self) -> RenewalPolicy:
        days = [*self.reminder_days, self.escalation_day, self.final_notice_day]
        if any(d < 1 or d >= self.cutoff_day for d in days):
            raise ValueError(
                f"every ladder day must fall between 1 and {self.cutoff_day - 1} "
                "(before the cutoff day)"
            )
        if self.reminder_days != sorted(set(self.reminder_days)):
            raise ValueError("reminder days must be ascending and distinct")
        return self


def period_of(instant: datetime, timezone: str = DEFAULT_BUSINESS_TIMEZONE) -> str:
    """The billing period (YYYY-MM) an instant falls in, in the business time zone."""
    local = instant.astimezone(zone(timezone))
    return format_period(local.year, local.month)


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return format_period(year + month // 12, month % 12 + 1)


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return format_period(year - (month == 1), (month - 2) % 12 + 1)


def local_instant(period: str, day: int, at: time, timezone: str) -> datetime:
    year, month = parse_period(period)
    local = datetime(year, month, day, at.hour, at.minute, tzinfo=zone(timezone))
    return local.astimezone(UTC)


def period_start(period: str, timezone: str = DEFAULT_BUSINESS_TIMEZONE) -> datetime:
    return local_instant(period, 1, time(0, 0), timezone)


def months_after(period: str, months: int) -> str:
    """The period `months` calendar months after `period` (before it when negative)."""
    year, month = parse_period(period)
    index = year * 12 + month - 1 + months
    return format_period(index // 12, index % 12 + 1)


def cutoff_at(period: str, policy: RenewalPolicy) -> datetime:
    """Payment is due before this instant: day `cutoff_day` 00:00 local."""
    return local_instant(period, policy.cutoff_day, time(0, 0), policy.timezone)


def open_period(now: datetime, policy: RenewalPolicy) -> str:
    """The period whose payments are being chased at `now`: this month until its cutoff, then
    the next one (from day 26 on, the month's payments are overdue, not pending)."""
    period = period_of(now, policy.timezone)
    return period if now < cutoff_at(period, policy) else next_period(period)


def ladder(period: str, policy: RenewalPolicy) -> list[LadderStep]:
    """Every step of the period's escalation ladder, in time order."""

    def at(day: int) -> datetime:
        return local_instant(period, day, policy.step_time, policy.timezone)

    steps = [LadderStep(kind=StepKind.NOTICE, at=period_start(period, policy.timezone), level=0)]
    for number, day in enumerate(policy.reminder_days, start=1):
        steps.append(LadderStep(kind=StepKind.REMINDER, at=at(day), level=number, number=number))
    level = len(policy.reminder_days)
    steps.append(
        LadderStep(kind=StepKind.ESCALATION, at=at(policy.escalation_day), level=level + 1)
    )
    steps.append(
        LadderStep(kind=StepKind.FINAL_NOTICE, at=at(policy.final_notice_day), level=level + 2)
    )
    steps.append(LadderStep(kind=StepKind.CUTOFF, at=cutoff_at(period, policy), level=level + 3))
    return sorted(steps, key=lambda s: (s.at, s.level))


def remaining_ladder(period: str, policy: RenewalPolicy, opened_at: datetime) -> list[LadderStep]:
    """The steps still ahead when the period is opened at `opened_at`.

    The opening notice always goes out (unless the cutoff has passed); steps whose time has
    passed are skipped, so a late start never floods the reseller with past reminders.
    """
    steps = ladder(period, policy)
    cutoff = steps[-1]
    if opened_at >= cutoff.at:
        return [cutoff.model_copy(update={"at": opened_at})]
    ahead = [s for s in steps[1:] if s.at > opened_at]
    return [steps[0].model_copy(update={"at": opened_at}), *ahead]


def first_billing_period(activated_at: datetime, policy: RenewalPolicy) -> str:
    """The first period a subscription is charged in: the one it was activated in, unless it
    was activated on or after that period's cutoff (a charge is never born overdue), then the
    next one."""
    period = period_of(activated_at, policy.timezone)
    return period if activated_at < cutoff_at(period, policy) else next_period(period)


def owes_charge(
    billing_cycle: str, activated_at: datetime | None, period: str, policy: RenewalPolicy
) -> bool:
    """Does an active subscription owe a charge in `period`?

    Monthly billing (P1M, or P1Y/P3Y billed monthly) owes one every month from its first
    billing period on; annual billing owes one at each renewal, the anniversary month of its
    first billing period in later years (the first year is paid with the order).
    """
    if activated_at is None:
        return False
    first = parse_period(first_billing_period(activated_at, policy))
    year, month = parse_period(period)
    if (year, month) < first:
        return False
    if billing_cycle == "monthly":
        return True
    return (year, month) != first and month == first[1]


class BillingSpan(BaseModel):
    """A billing period: what one charge pays for, [starts_at, ends_at). It ends where the
    period `next_charge` (YYYY-MM) starts, whose charge pays for the following span."""

    model_config = ConfigDict(frozen=True)

    starts_at: datetime
    ends_at: datetime
    next_charge: str
    months: int  # 1 for monthly billing, 12 for annual
    timezone: str = DEFAULT_BUSINESS_TIMEZONE

    @property
    def length(self) -> timedelta:
        return self.ends_at - self.starts_at

    def following(self) -> BillingSpan:
        """The span the charge of `next_charge` pays for."""
        upcoming = months_after(self.next_charge, self.months)
        return self.model_copy(
            update={
                "starts_at": self.ends_at,
                "ends_at": period_start(upcoming, self.timezone),
                "next_charge": upcoming,
            }
        )


def next_charge_period(
    billing_cycle: str, activated_at: datetime | None, instant: datetime, policy: RenewalPolicy
) -> str:
    """The first period starting after `instant` in which the subscription owes a charge:
    the next month for monthly billing, the next renewal month for annual billing (the month
    of its first billing period, 12, 24 … months on; the first year was paid with the order)."""
    following = next_period(period_of(instant, policy.timezone))
    if billing_cycle == "monthly" or activated_at is None:
        return following
    first = first_billing_period(activated_at, policy)
    year, month = parse_period(following)
    first_year, first_month = parse_period(first)
    months = (year - first_year) * 12 + month - first_month
    years = max(1, -(-months // 12))  # ceiling, and never the first (already paid) year
    return months_after(first, 12 * years)


def billing_span(
    billing_cycle: str, activated_at: datetime | None, instant: datetime, policy: RenewalPolicy
) -> BillingSpan:
    """The billing period `instant` falls in: it ends when the next charge's period starts
    (monthly: day 1 00:00 local of the next month; annual: the next renewal month's day 1) and
    lasts one month or one year."""
    upcoming = next_charge_period(billing_cycle, activated_at, instant, policy)
    months = 1 if billing_cycle == "monthly" or activated_at is None else 12
    return BillingSpan(
        starts_at=period_start(months_after(upcoming, -months), policy.timezone),
        ends_at=period_start(upcoming, policy.timezone),
        next_charge=upcoming,
        months=months,
        timezone=policy.timezone,
    )


_CENT = Decimal("0.01")
_MICROSECOND = timedelta(microseconds=1)


def prorate_seat_change(
    seats_before: int,
    seats_after: int,
    unit_price: Decimal,
    changed_at: datetime,
    span: BillingSpan,
    whole_periods: int = 0,
) -> Decimal:
    """What a seat change at `changed_at` adds to (or, negative, credits on) the next charge:
    (seats_after - seats_before) × unit price × (time from the change to the end of its billing
    period / the period's length), rounded half-up to the cent.

    The share is clamped to 0..1: a change before the span starts (annual billing, activated
    after the cutoff, changed before its first billing period) counts as a whole period, one at
    or after its end as nothing. `whole_periods` adds following periods whole: those whose
    charge was already paid at the old quantity when the change was recorded."""
    left = min(max(span.ends_at - changed_at, timedelta(0)), span.length)
    share = Decimal(left // _MICROSECOND) / Decimal(span.length // _MICROSECOND) + whole_periods
    amount = Decimal(seats_after - seats_before) * Decimal(unit_price) * share
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def charge_total(base: Decimal, prorations: Iterable[Decimal]) -> tuple[Decimal, Decimal]:
    """A charge's amount and the credit it carries to the next charge: the base (seats × unit
    price) plus the prorations it bills; below zero the charge is 0.00 and the rest (negative)
    carries over."""
    total = base + sum(prorations, Decimal(0))
    if total < 0:
        return Decimal("0.00"), total.quantize(_CENT)
    return total.quantize(_CENT), Decimal("0.00")


# The registry keeps amounts as NUMERIC(12, 2): a charge above this cannot be recorded.
MAX_CHARGE_AMOUNT = Decimal("9999999999.99")


class ChargeAmountOutOfRange(ValueError):
    """A subscription's charge does not fit the registry's amount column (bad data upstream)."""


def charge_amount(quantity: int, unit_price: Decimal) -> Decimal:
    amount = (Decimal(quantity) * unit_price).quantize(Decimal("0.01"))
    if not Decimal(0) <= amount <= MAX_CHARGE_AMOUNT:
        raise ChargeAmountOutOfRange(
            f"charge of {quantity} × {unit_price} = {amount} MXN is outside 0..{MAX_CHARGE_AMOUNT}"
        )
    return amount


# A paid subscription left suspended: reactivation is retried with backoff for this long, then
# ops are alerted (REACTIVATION_FAILED) and it is retried every REACTIVATION_RETRY_EVERY until
# REACTIVATION_GIVE_UP_AFTER has passed since the payment (ops are told again, by hand then).
REACTIVATION_ESCALATE_AFTER = timedelta(hours=4)
REACTIVATION_RETRY_EVERY = timedelta(hours=6)
REACTIVATION_GIVE_UP_AFTER = timedelta(days=30)
# Suspension at the cutoff is retried this long; then ops are told and the charge stays AT_RISK.
SUSPENSION_RETRY_HORIZON = timedelta(hours=12)


def late_payment_deadline(period: str, policy: RenewalPolicy) -> datetime:
    return cutoff_at(period, policy) + timedelta(days=policy.late_payment_days)
