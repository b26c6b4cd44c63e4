"""A subscription's terms: when one ends, what the next one is, and when the reseller is warned
that one will end without renewing. Pure functions of their inputs (no clock reads), so the
subscription workflow calls them deterministically and tests pin every instant.

How Partner Center dates a term, and the instants we derive from it:
- `commitmentEndDate` is the term's last day, inclusive, in UTC. We carry it as that day at
  00:00 UTC (`term_ends_at`, what `term_end()` returns).
- The term is over at the end of that day: the next day (the anniversary) at 00:00 UTC, 18:00
  the last day in Mexico City (`term_end_instant()`). That is when the subscription workflow
  renews it (auto-renew on) or lets it expire (off). Partner Center renews on that day and may
  take up to 24 h; we open the next 168 h window from the anniversary itself, so our window
  never outlasts the provider's (a late provider renewal only gives the provider longer).
- The next term starts at the anniversary and ends `term_end(anniversary, term)`: same
  month-arithmetic as the first one.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from csp_core.orders.models import Term

TERM_MONTHS = {Term.P1M: 1, Term.P1Y: 12, Term.P3Y: 36}

# The reseller is told this many days before the term's last day that a subscription with
# auto-renew off will expire, at this local time (business time zone) on that day.
EXPIRY_NOTICE_DAYS = (30, 7)
EXPIRY_NOTICE_LOCAL_TIME = time(9, 0)


def term_end(start: datetime, term: Term) -> datetime:
    """The term's last day as Partner Center dates it (commitmentEndDate: the day before the
    monthly anniversary, at midnight UTC), for when the provider does not say."""
    start = start.astimezone(UTC)
    months = start.month - 1 + TERM_MONTHS[term]
    year, month = start.year + months // 12, months % 12 + 1
    day = min(start.day, monthrange(year, month)[1])
    end = start.replace(year=year, month=month, day=day) - timedelta(days=1)
    return end.replace(hour=0, minute=0, second=0, microsecond=0)


def term_ends_on(term_ends_at: datetime) -> str:
    """The term's last day as Partner Center dates it (commitmentEndDate, a UTC date)."""
    return term_ends_at.astimezone(UTC).date().isoformat()


def term_end_instant(term_ends_at: datetime) -> datetime:
    """When the term is over and the subscription renews or expires: the day after its last
    day (the anniversary), 00:00 UTC."""
    last_day = term_ends_at.astimezone(UTC).date()
    return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=UTC)


def next_term(anniversary: datetime, term: Term) -> tuple[datetime, datetime]:
    """The term that starts at `anniversary` when the current one renews: (start, last day)."""
    return anniversary, term_end(anniversary, term)


def expiry_notice_at(term_ends_at: datetime, days_before: int, tz: ZoneInfo) -> datetime:
    """When the `days_before` notice goes out: that many days before the term's last day, at
    EXPIRY_NOTICE_LOCAL_TIME in the business time zone."""
    day = term_ends_at.astimezone(UTC).date() - timedelta(days=days_before)
    return datetime.combine(day, EXPIRY_NOTICE_LOCAL_TIME, tzinfo=tz)


def expiry_notices_ahead(term_ends_at: datetime, now: datetime, tz: ZoneInfo) -> tuple[int, ...]:
    """The notices of this term still to come at `now` (a notice whose instant has passed when
    a term starts, or when a workflow adopts it, is not sent late: its wording would be false)."""
    return tuple(d for d in EXPIRY_NOTICE_DAYS if expiry_notice_at(term_ends_at, d, tz) > now)
