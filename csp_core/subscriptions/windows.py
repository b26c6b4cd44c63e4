"""Microsoft New Commerce windows on a subscription. Pure functions of their inputs (no clock
reads), so workflows can call them deterministically and tests can pin every instant."""

from __future__ import annotations

from datetime import datetime, timedelta

# Seat decreases and cancellation only within 168 h of purchase or of the term's renewal.
NCE_CHANGE_WINDOW = timedelta(hours=168)


def change_window_end(purchased_or_renewed_at: datetime) -> datetime:
    """When seat decreases and cancellation stop being allowed (NCE 168-hour rule)."""
    return purchased_or_renewed_at + NCE_CHANGE_WINDOW


def change_window_open(purchased_or_renewed_at: datetime, now: datetime) -> bool:
    """Whether seats can still be removed or the subscription cancelled at `now`: the window's
    end is exclusive, so at 168 h exactly it is closed."""
    return now < change_window_end(purchased_or_renewed_at)
