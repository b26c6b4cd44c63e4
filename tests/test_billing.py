"""The billing rules on their own: which periods a subscription owes, the ladder's local
instants, the cutoff, and which period is open. Pure functions, pinned instants."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from csp_core.renewals.billing import (
    RenewalPolicy,
    StepKind,
    cutoff_at,
    first_billing_period,
    ladder,
    next_period,
    open_period,
    owes_charge,
    previous_period,
    remaining_ladder,
)
from csp_core.timezones import BUSINESS_TZ

POLICY = RenewalPolicy()


def mx(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BUSINESS_TZ)


def test_cutoff_is_day_26_midnight_mexico_city_which_is_06_utc() -> None:
    assert cutoff_at("2026-11", POLICY) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert cutoff_at("2027-02", POLICY.model_copy(update={"cutoff_day": 20})) == mx(2027, 2, 20)


def test_ladder_runs_at_nine_local_on_the_configured_days() -> None:
    steps = [(s.kind, s.at.astimezone(BUSINESS_TZ), s.level) for s in ladder("2027-02", POLICY)]
    assert steps == [
        (StepKind.NOTICE, mx(2027, 2, 1), 0),
        (StepKind.REMINDER, mx(2027, 2, 15, 9), 1),
        (StepKind.REMINDER, mx(2027, 2, 20, 9), 2),
        (StepKind.ESCALATION, mx(2027, 2, 23, 9), 3),
        (StepKind.FINAL_NOTICE, mx(2027, 2, 25, 9), 4),
        (StepKind.CUTOFF, mx(2027, 2, 26), 5),
    ]


def test_a_period_opened_late_skips_the_steps_already_past() -> None:
    steps = remaining_ladder("2026-12", POLICY, opened_at=mx(2026, 12, 21, 8))
    assert [s.kind for s in steps] == [
        StepKind.NOTICE,
        StepKind.ESCALATION,
        StepKind.FINAL_NOTICE,
        StepKind.CUTOFF,
    ]
    assert steps[0].at == mx(2026, 12, 21, 8)


def test_a_period_opened_after_its_cutoff_is_at_the_cutoff_at_once() -> None:
    opened = mx(2026, 12, 27, 10)
    assert [(s.kind, s.at) for s in remaining_ladder("2026-12", POLICY, opened)] == [
        (StepKind.CUTOFF, opened)
    ]


@pytest.mark.parametrize(
    ("activated", "first"),
    [
        (mx(2026, 11, 3, 12), "2026-11"),
        (mx(2026, 11, 25, 23, 59), "2026-11"),  # the last minute before the cutoff
        (mx(2026, 11, 26, 0, 0), "2026-12"),  # on the cutoff: never born overdue
        (mx(2026, 12, 30), "2027-01"),  # and across the year end
        # 05:30 UTC on the 26th is still the 25th in Mexico City
        (datetime(2026, 11, 26, 5, 30, tzinfo=UTC), "2026-11"),
    ],
)
def test_first_billing_period(activated: datetime, first: str) -> None:
    assert first_billing_period(activated, POLICY) == first


@pytest.mark.parametrize(
    ("period", "monthly", "annual"),
    [
        ("2026-10", False, False),  # before activation
        ("2026-11", True, False),  # the first period: annual is paid with the order
        ("2026-12", True, False),
        ("2027-10", True, False),
        ("2027-11", True, True),  # the annual renewal month
        ("2028-11", True, True),
    ],
)
def test_which_periods_owe_a_charge(period: str, monthly: bool, annual: bool) -> None:
    activated = mx(2026, 11, 10, 12)
    assert owes_charge("monthly", activated, period, POLICY) is monthly
    assert owes_charge("annual", activated, period, POLICY) is annual


def test_a_subscription_never_activated_owes_nothing() -> None:
    assert owes_charge("monthly", None, "2026-11", POLICY) is False


@pytest.mark.parametrize(
    ("now", "period"),
    [
        (mx(2026, 11, 1), "2026-11"),
        (mx(2026, 11, 25, 23, 59), "2026-11"),
        (mx(2026, 11, 26), "2026-12"),
        (mx(2026, 12, 31, 23), "2027-01"),
    ],
)
def test_the_open_period_moves_on_at_the_cutoff(now: datetime, period: str) -> None:
    assert open_period(now, POLICY) == period


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"reminder_days": [15, 27]}, "before the cutoff day"),
        ({"escalation_day": 26}, "before the cutoff day"),
        ({"reminder_days": [20, 15]}, "ascending"),
        ({"cutoff_day": 31}, "less than or equal to 28"),
    ],
)
def test_a_ladder_that_does_not_fit_the_month_is_refused(change: dict, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        RenewalPolicy(**change)


def test_step_time_is_configurable() -> None:
    policy = RenewalPolicy(step_time=time(10, 30), reminder_days=[10])
    reminders = [s for s in ladder("2026-12", policy) if s.kind is StepKind.REMINDER]
    assert [s.at for s in reminders] == [mx(2026, 12, 10, 10, 30)]


@pytest.mark.parametrize(("period", "following"), [("2026-11", "2026-12"), ("2026-12", "2027-01")])
def test_periods_step_across_the_year_end(period: str, following: str) -> None:
    assert next_period(period) == following
    assert previous_period(following) == period
