"""Proration of seat changes on its own: which billing period a change falls in, how much of it
is left, and what a charge comes to with its prorations. Pure functions, pinned instants in
Mexico City time (periods start on day 1 00:00 there, 06:00 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csp_core.renewals.billing import (
    RenewalPolicy,
    billing_span,
    charge_total,
    next_charge_period,
    owes_charge,
    prorate_seat_change,
)
from csp_core.timezones import BUSINESS_TZ

POLICY = RenewalPolicy()
PRICE = Decimal("129.00")
SECOND = timedelta(seconds=1)


def mx(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=BUSINESS_TZ)


def prorate(
    before: int,
    after: int,
    at: datetime,
    cycle: str = "monthly",
    activated: datetime = mx(2026, 1, 10),
) -> tuple[Decimal, datetime, datetime]:
    """(amount, billing period start, prorated until) of a change at `at`."""
    span = billing_span(cycle, activated, at, POLICY)
    return prorate_seat_change(before, after, PRICE, at, span), span.starts_at, span.ends_at


# ------------------------------------------------------------------ monthly billing


def test_a_change_at_the_period_start_is_prorated_for_the_whole_month() -> None:
    amount, start, until = prorate(10, 15, mx(2026, 3, 1))
    assert (start, until) == (mx(2026, 3, 1), mx(2026, 4, 1))
    assert until == datetime(2026, 4, 1, 6, 0, tzinfo=UTC)
    assert amount == Decimal("645.00")  # 5 × 129 × 1


def test_a_change_one_second_before_the_period_end_is_prorated_for_one_second() -> None:
    amount, start, until = prorate(10, 15, mx(2026, 4, 1) - SECOND)
    assert (start, until) == (mx(2026, 3, 1), mx(2026, 4, 1))
    assert amount == Decimal("0.00")  # 5 × 129 × 1 / 2,678,400 s rounds to nothing
    big, _, _ = prorate(1, 1001, mx(2026, 4, 1) - SECOND)
    assert big == Decimal("0.05")  # 1000 × 129 / 2,678,400 = 0.0482 → 0.05


def test_a_change_at_the_period_end_instant_belongs_to_the_next_period() -> None:
    amount, start, until = prorate(10, 15, mx(2026, 4, 1))
    assert (start, until) == (mx(2026, 4, 1), mx(2026, 5, 1))
    assert amount == Decimal("645.00")


def test_mid_month_added_seats_owe_the_rest_of_the_month_and_removed_ones_are_a_credit() -> None:
    # 16 Mar 12:00 → 1 Apr 00:00 is 15.5 of March's 31 days: half the month.
    added, _, until = prorate(10, 15, mx(2026, 3, 16, 12))
    removed, _, _ = prorate(10, 8, mx(2026, 3, 16, 12))
    assert until == mx(2026, 4, 1)
    assert added == Decimal("322.50")  # 5 × 129 × 15.5 / 31
    assert removed == Decimal("-129.00")  # -2 × 129 × 15.5 / 31


def test_february_is_a_shorter_period() -> None:
    amount, start, until = prorate(10, 11, mx(2027, 2, 15))
    assert (start, until) == (mx(2027, 2, 1), mx(2027, 3, 1))
    assert amount == Decimal("64.50")  # 129 × 14 / 28


def test_rounding_is_half_up_to_the_cent() -> None:
    span = billing_span("monthly", mx(2026, 1, 10), mx(2026, 3, 1), POLICY)
    # A quarter of the month's seconds left: 0.10 × 0.25 = 0.025 → 0.03.
    quarter_left = span.ends_at - span.length / 4
    assert prorate_seat_change(1, 2, Decimal("0.10"), quarter_left, span) == Decimal("0.03")
    assert prorate_seat_change(2, 1, Decimal("0.10"), quarter_left, span) == Decimal("-0.03")


def test_monthly_after_the_cutoff_the_activation_month_runs_to_the_first_charge() -> None:
    """Activated on the 27th: first charged next month; a change before then is prorated to
    that first charge's period start."""
    activated = mx(2026, 2, 27, 10)
    assert next_charge_period("monthly", activated, mx(2026, 2, 28), POLICY) == "2026-03"
    amount, start, until = prorate(10, 11, mx(2026, 2, 28), activated=activated)
    assert (start, until) == (mx(2026, 2, 1), mx(2026, 3, 1))
    assert amount == Decimal("4.61")  # 129 × 1/28


# ------------------------------------------------------------------ annual billing


ANNUAL_ACTIVATED = mx(2026, 3, 10, 9)  # first billing period 2026-03; renewals each March


def test_annual_billing_prorates_to_the_next_renewal_month() -> None:
    at = mx(2026, 9, 1)
    assert next_charge_period("annual", ANNUAL_ACTIVATED, at, POLICY) == "2027-03"
    amount, start, until = prorate(10, 15, at, "annual", ANNUAL_ACTIVATED)
    assert (start, until) == (mx(2026, 3, 1), mx(2027, 3, 1))
    assert amount == Decimal("319.85")  # 5 × 129 × 181 / 365 days
    assert owes_charge("annual", ANNUAL_ACTIVATED, "2027-03", POLICY)


def test_annual_edges_one_second_before_and_at_the_renewal_month() -> None:
    before, start, until = prorate(10, 15, mx(2027, 3, 1) - SECOND, "annual", ANNUAL_ACTIVATED)
    assert (start, until) == (mx(2026, 3, 1), mx(2027, 3, 1))
    assert before == Decimal("0.00")
    at, start, until = prorate(10, 15, mx(2027, 3, 1), "annual", ANNUAL_ACTIVATED)
    assert (start, until) == (mx(2027, 3, 1), mx(2028, 3, 1))  # 366 days: 29 Feb 2028
    assert at == Decimal("645.00")


def test_annual_inside_the_renewal_month_runs_to_the_following_year() -> None:
    amount, start, until = prorate(10, 11, mx(2027, 3, 15), "annual", ANNUAL_ACTIVATED)
    assert (start, until) == (mx(2027, 3, 1), mx(2028, 3, 1))
    assert amount == Decimal("124.07")  # 129 × 352 / 366 days


def test_annual_activated_after_the_cutoff_counts_the_first_days_as_a_whole_year() -> None:
    """Activated on 27 Feb: its first billing period (the order's year) starts on 1 Mar. A
    change before then is prorated to the first renewal, never beyond a whole year."""
    activated = mx(2026, 2, 27, 10)
    amount, start, until = prorate(10, 11, mx(2026, 2, 28), "annual", activated)
    assert (start, until) == (mx(2026, 3, 1), mx(2027, 3, 1))
    assert amount == Decimal("129.00")


def test_the_cutoff_setting_moves_annual_renewal_months() -> None:
    activated = mx(2026, 2, 22)  # before day 26, after day 20
    early = POLICY.model_copy(update={"cutoff_day": 20})
    assert next_charge_period("annual", activated, mx(2026, 6, 1), POLICY) == "2027-02"
    assert next_charge_period("annual", activated, mx(2026, 6, 1), early) == "2027-03"


# ------------------------------------------------------------------ the charge


@pytest.mark.parametrize(
    ("base", "prorations", "amount", "carried"),
    [
        ("1935.00", ["322.50"], "2257.50", "0.00"),
        ("1032.00", ["-129.00"], "903.00", "0.00"),
        ("129.00", ["-129.00"], "0.00", "0.00"),
        ("129.00", ["-1161.00"], "0.00", "-1032.00"),  # credits beyond the charge carry over
        ("129.00", ["-1032.00", "100.00"], "0.00", "-803.00"),
        ("1290.00", [], "1290.00", "0.00"),
    ],
)
def test_a_charge_bottoms_at_zero_and_carries_the_rest(
    base: str, prorations: list[str], amount: str, carried: str
) -> None:
    assert charge_total(Decimal(base), [Decimal(p) for p in prorations]) == (
        Decimal(amount),
        Decimal(carried),
    )
