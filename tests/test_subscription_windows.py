"""The 168-hour window as a pure rule, pinned at its exact instants (the time-skipping tests
in test_subscription_workflow.py reach the same edges, a few milliseconds late, since the test
server's clock keeps running while a test talks to it)."""

from datetime import UTC, datetime, timedelta

from csp_core.subscriptions.windows import change_window_end, change_window_open

PURCHASED = datetime(2026, 11, 2, 17, 30, tzinfo=UTC)


def test_the_window_ends_168_hours_after_the_purchase() -> None:
    assert change_window_end(PURCHASED) == datetime(2026, 11, 9, 17, 30, tzinfo=UTC)


def test_removing_seats_is_allowed_at_167_h_59_min_59_s_and_not_at_168_h() -> None:
    assert change_window_open(PURCHASED, PURCHASED + timedelta(hours=167, minutes=59, seconds=59))
    assert not change_window_open(PURCHASED, PURCHASED + timedelta(hours=168))
