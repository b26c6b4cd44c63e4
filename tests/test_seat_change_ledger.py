"""The seat changes ledger and the charges it prices, on real databases: a SQLite file always,
PostgreSQL when TEST_DATABASE_URL is set (fixtures from test_registry: a fresh schema each).

The subscription: 10 seats of M365 Business Basic at 129.00, billed monthly, activated on
10 Jan 2026 (Mexico City).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from csp_core.registry import Registry, UnknownSubscription
from csp_core.renewals.billing import RenewalPolicy, billing_span, cutoff_at, period_start
from csp_core.timezones import BUSINESS_TZ
from tests.test_cli import cli_env, csp  # noqa: F401
from tests.test_registry import (  # noqa: F401
    CONTOSO,
    _concurrently,
    _line,
    _order,
    _tenant,
    engine,
    licensed,
    registry,
)

POLICY = RenewalPolicy()
ACTIVATED = datetime(2026, 1, 10, 9, 0, tzinfo=BUSINESS_TZ)


def mx(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=BUSINESS_TZ)


@pytest.fixture(params=["bill_period", "bill_periods"])
def ledger(licensed: Registry, request: pytest.FixtureRequest) -> Registry:  # noqa: F811
    """Billed one charge at a time, and as the renewal cycle bills a page (bill_periods: the
    page's rows read at once, a savepoint each): the same charges either way."""
    licensed.set_subscription_status("sub-1", "active", activated_at=ACTIVATED)
    licensed.bill_by_page = request.param == "bill_periods"  # type: ignore[attr-defined]
    return licensed


def change(reg: Registry, change_id: str, at: datetime, seats: int):
    span = billing_span("monthly", ACTIVATED, at, POLICY)
    return reg.record_seat_change("sub-1", change_id, at, seats, span)


def bill(reg: Registry, period: str):
    starts_at, due_at = period_start(period), cutoff_at(period, POLICY)
    if not getattr(reg, "bill_by_page", False):
        return reg.bill_period("sub-1", period, starts_at, due_at)

    def refuse(subscription_id: str, err: Exception) -> None:
        raise err

    assert reg.bill_periods(["sub-1"], period, starts_at, due_at, on_error=refuse) == 1
    return reg.get_charge("sub-1", period)


def test_a_seat_change_is_recorded_once_with_its_proration_and_the_new_quantity(
    ledger: Registry,
) -> None:
    row, newly = change(ledger, "req-add-5", mx(2026, 3, 16, 12), 15)
    again, newly_again = change(ledger, "req-add-5", mx(2026, 3, 17), 20)  # a retry: same id

    assert newly and not newly_again and again == row
    assert (row.seats_before, row.seats_after, row.unit_price) == (10, 15, Decimal("129.00"))
    assert row.changed_at == mx(2026, 3, 16, 12) and row.prorated_until == mx(2026, 4, 1)
    assert row.proration_amount == Decimal("322.50") and row.billed_period is None
    assert ledger.get_subscription("sub-1").quantity == 15
    assert ledger.list_seat_changes("sub-1") == [row]


def test_concurrent_retries_of_one_change_record_it_once(ledger: Registry) -> None:
    results = _concurrently(lambda: change(ledger, "req-add-5", mx(2026, 3, 16, 12), 15))

    assert sorted(newly for _, newly in results) == [False] * (len(results) - 1) + [True]
    assert len(ledger.list_seat_changes("sub-1")) == 1
    assert ledger.get_subscription("sub-1").quantity == 15


def test_the_next_charge_bills_the_new_quantity_and_the_proration_once(ledger: Registry) -> None:
    change(ledger, "req-add-5", mx(2026, 3, 16, 12), 15)

    # March's charge, recorded after the change: the seats March started with, nothing more.
    assert bill(ledger, "2026-03").amount == Decimal("1290.00")
    april = bill(ledger, "2026-04")
    assert april.amount == Decimal("2257.50")  # 15 × 129 + 322.50
    [row] = ledger.list_seat_changes("sub-1")
    assert row.billed_period == "2026-04"
    assert bill(ledger, "2026-04") == april  # recorded again (a re-run): the same charge
    assert bill(ledger, "2026-05").amount == Decimal("1935.00")  # 15 × 129 from then on
    assert [r.billed_period for r in ledger.list_seat_changes("sub-1")] == ["2026-04"]
    assert ledger.list_billed_seat_changes("2026-04") == [row]
    assert ledger.list_billed_seat_changes("2026-05") == []


def test_changes_at_the_period_start_and_one_second_before_it(ledger: Registry) -> None:
    change(ledger, "one-second-before", mx(2026, 4, 1) - timedelta(seconds=1), 11)
    change(ledger, "at-the-start", mx(2026, 4, 1), 12)

    april = bill(ledger, "2026-04")
    may = bill(ledger, "2026-05")

    # April: 11 seats (the change at 00:00:00 is not in force yet) + 1 s of March ≈ 0.
    assert april.amount == Decimal("1419.00")
    # May: 12 seats + the whole of April for the 12th seat.
    assert may.amount == Decimal("1677.00")  # 12 × 129 + 129
    billed = {r.change_id: r.billed_period for r in ledger.list_seat_changes("sub-1")}
    assert billed == {"one-second-before": "2026-04", "at-the-start": "2026-05"}


def test_credits_beyond_a_charge_leave_it_at_zero_and_carry_to_the_next(ledger: Registry) -> None:
    """9 of 10 seats removed at the start of March (inside the window): -9 × 129 for the
    whole month. April's 129.00 cannot absorb 1,161.00 of credit: the rest carries, month
    after month, until it is used up."""
    change(ledger, "req-remove-9", mx(2026, 3, 1), 1)

    assert bill(ledger, "2026-03").amount == Decimal("1290.00")
    amounts = {}
    for period in ["2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09",
                   "2026-10", "2026-11", "2026-12", "2027-01"]:  # fmt: skip
        amounts[period] = bill(ledger, period).amount
        assert bill(ledger, period).amount == amounts[period]  # recorded again: the same

    assert amounts["2026-04"] == amounts["2026-11"] == Decimal("0.00")
    assert amounts["2026-12"] == Decimal("0.00")  # 129 - 129: used up exactly
    assert amounts["2027-01"] == Decimal("129.00")
    rows = ledger.list_seat_changes("sub-1")
    carried = {r.carried_from: (r.proration_amount, r.billed_period) for r in rows[1:]}
    assert carried == {
        "2026-04": (Decimal("-1032.00"), "2026-05"),
        "2026-05": (Decimal("-903.00"), "2026-06"),
        "2026-06": (Decimal("-774.00"), "2026-07"),
        "2026-07": (Decimal("-645.00"), "2026-08"),
        "2026-08": (Decimal("-516.00"), "2026-09"),
        "2026-09": (Decimal("-387.00"), "2026-10"),
        "2026-10": (Decimal("-258.00"), "2026-11"),
        "2026-11": (Decimal("-129.00"), "2026-12"),
    }
    assert rows[0].billed_period == "2026-04" and not rows[0].is_carry_over
    assert ledger.get_subscription("sub-1").quantity == 1


def test_a_carry_over_follows_its_charge_while_the_charge_is_open(ledger: Registry) -> None:
    change(ledger, "req-remove-9", mx(2026, 3, 1), 1)
    assert bill(ledger, "2026-04").amount == Decimal("0.00")
    [_, carry] = ledger.list_seat_changes("sub-1")
    assert carry.proration_amount == Decimal("-1032.00")

    # 9 seats added back at 23:00 on 31 March: April (still open) is priced again at once,
    # with 10 seats, and now absorbs the whole credit; the carry-over goes away.
    change(ledger, "req-add-9", mx(2026, 3, 31, 23), 10)

    april = ledger.get_charge("sub-1", "2026-04")
    assert april.amount == Decimal("130.56")  # 10 × 129 - 1161.00 + 9 × 129 × 1 h / 744 h
    assert bill(ledger, "2026-04") == april
    rows = ledger.list_seat_changes("sub-1")
    assert [(r.change_id, r.billed_period) for r in rows] == [
        ("req-remove-9", "2026-04"),
        ("req-add-9", "2026-04"),
    ]


def test_a_change_after_an_early_recorded_charge_prices_it_again(ledger: Registry) -> None:
    """April's charge recorded on 27 March (the open period moves on at the cutoff), then 5
    seats added on 28 March at noon: April is priced again with them at once."""
    assert bill(ledger, "2026-04").amount == Decimal("1290.00")

    row, _ = change(ledger, "req-add-5", mx(2026, 3, 28, 12), 15)

    assert row.proration_amount == Decimal("72.82")  # 5 × 129 × 3.5 / 31 days
    assert ledger.list_seat_changes("sub-1")[0].billed_period == "2026-04"
    assert ledger.get_charge("sub-1", "2026-04").amount == Decimal("2007.82")  # 1935 + 72.82


def test_a_change_after_a_paid_early_charge_is_prorated_over_that_period_too(
    ledger: Registry,
) -> None:
    """April's charge was recorded early and paid at 10 seats; a seat added at 23:00 on
    31 March cannot change it: the change owes the last hour of March and all of April, and
    May's charge bills it. A settled charge is never priced again."""
    bill(ledger, "2026-04")
    ledger.record_payment("sub-1", "2026-04", "SPEI-1")

    row, _ = change(ledger, "req-add-1", mx(2026, 3, 31, 23), 11)

    assert row.prorated_until == mx(2026, 5, 1)
    assert row.proration_amount == Decimal("129.17")  # 129 × (1/744 + 1)
    assert bill(ledger, "2026-04").amount == Decimal("1290.00")
    assert bill(ledger, "2026-05").amount == Decimal("1548.17")  # 11 × 129 + 129.17
    assert ledger.list_seat_changes("sub-1")[0].billed_period == "2026-05"


def test_unknown_subscriptions_and_reserved_change_ids_are_refused(ledger: Registry) -> None:
    span = billing_span("monthly", ACTIVATED, mx(2026, 3, 2), POLICY)
    with pytest.raises(UnknownSubscription, match="sub-nope"):
        ledger.record_seat_change("sub-nope", "req-1", mx(2026, 3, 2), 5, span)
    with pytest.raises(UnknownSubscription, match="sub-nope"):
        ledger.bill_period("sub-nope", "2026-04", period_start("2026-04"), mx(2026, 4, 26))
    with pytest.raises(ValueError, match="reserved"):
        ledger.record_seat_change("sub-1", "carry-over:2026-04", mx(2026, 3, 2), 5, span)
    with pytest.raises(ValueError, match="at least 1"):
        ledger.record_seat_change("sub-1", "req-0", mx(2026, 3, 2), 0, span)
    assert ledger.list_seat_changes("sub-1") == []
    assert ledger.get_subscription("sub-1").quantity == 10


def test_renewals_status_shows_the_proration_lines_under_their_charge(
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    """`csp renewals status`: sub-1 added 5 seats mid-March (April bills them); sub-2 went from
    10 seats to 1 on 1 March, a credit April cannot absorb, so May bills the rest."""
    reg = Registry.from_url(cli_env["DATABASE_URL"])
    try:
        _order(reg)
        _tenant(reg)
        reg.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1"), _line("sub-2")])
        for sub in ("sub-1", "sub-2"):
            reg.set_subscription_status(sub, "active", activated_at=ACTIVATED)
        span = billing_span("monthly", ACTIVATED, mx(2026, 3, 16, 12), POLICY)
        reg.record_seat_change("sub-1", "req-add-5", mx(2026, 3, 16, 12), 15, span)
        reg.record_seat_change("sub-2", "req-remove-9", mx(2026, 3, 1), 1, span)
        for sub in ("sub-1", "sub-2"):
            for period in ("2026-04", "2026-05"):
                reg.bill_period(sub, period, period_start(period), cutoff_at(period, POLICY))
    finally:
        reg.dispose()

    result = csp(cli_env, "renewals", "status")
    as_json = csp(cli_env, "renewals", "status", "--period", "2026-04", "--json")

    assert result.returncode == 0, result.stderr
    _, *rows = result.stdout.strip().splitlines()
    assert [row.split()[:3] for row in rows if row.startswith("2026")] == [
        ["2026-04", "sub-1", "2257.50"],
        ["2026-04", "sub-2", "0.00"],
        ["2026-05", "sub-1", "1935.00"],
        ["2026-05", "sub-2", "0.00"],
    ]
    lines = [row.strip() for row in rows if not row.startswith("2026")]
    until = "until 2026-04-01 00:00, at 129.00 each"
    assert lines == [
        f"proration +322.50: seats 10 → 15 on 2026-03-16 12:00, {until}",
        f"proration -1161.00: seats 10 → 1 on 2026-03-01 00:00, {until}",
        "credit -1032.00 carried over from 2026-04",
    ]
    assert as_json.returncode == 0, as_json.stderr
    [sub_1, sub_2] = json.loads(as_json.stdout)
    assert [c["proration_amount"] for c in sub_1["seat_changes"]] == ["322.50"]
    assert sub_1["amount"] == "2257.50" and sub_2["seat_changes"][0]["seats_after"] == 1
