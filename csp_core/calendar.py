"""Business calendar helpers.

Formatting: dates, instants, billing periods and MXN amounts as a Mexican reader expects them,
spelled out by hand (no `locale`: it depends on what the host has installed).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from csp_core.timezones import BUSINESS_TZ

MONTHS_ES = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)

# How people in Mexico name the official zones; anything else is shown by its IANA key.
_ZONE_LABELS = {
    "America/Mexico_City": "hora del centro de México",
    "America/Monterrey": "hora del centro de México",
    "America/Merida": "hora del centro de México",
    "America/Cancun": "hora del sureste de México",
    "America/Mazatlan": "hora del Pacífico de México",
    "America/Hermosillo": "hora del Pacífico de México",
    "America/Tijuana": "hora del noroeste de México",
    "UTC": "UTC",
    "Etc/UTC": "UTC",
}

# A billing period is a calendar month in the business time zone, written YYYY-MM, in ASCII
# digits only.
PERIOD_RE = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_CENTS = Decimal("0.01")


def zone_label(tz: ZoneInfo) -> str:
    return _ZONE_LABELS.get(tz.key, f"hora de {tz.key}")


def format_date_es(d: date) -> str:
    """'25 de diciembre de 2026'."""
    return f"{d.day} de {MONTHS_ES[d.month - 1]} de {d.year}"


def format_datetime_es(dt: datetime, tz: ZoneInfo = BUSINESS_TZ) -> str:
    """'25 de diciembre de 2026, 09:00 h (hora del centro de México)', shown in `tz`.

    Naive datetimes are refused: guessing their zone is how deadlines end up six hours off.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"format_datetime_es needs an aware datetime, got naive {dt.isoformat()}")
    local = dt.astimezone(tz)
    return f"{format_date_es(local.date())}, {local:%H:%M} h ({zone_label(tz)})"


def parse_period(period: str) -> tuple[int, int]:
    """'2026-12' -> (2026, 12); anything else is a ValueError naming the expected shape."""
    match = PERIOD_RE.match(period)
    if not match:
        raise ValueError(f"billing period must be YYYY-MM (got {period!r})")
    return int(match.group(1)), int(match.group(2))


def format_period(year: int, month: int) -> str:
    """(2026, 12) -> '2026-12'."""
    return f"{year:04d}-{month:02d}"


def format_period_es(period: str) -> str:
    """'2026-12' -> 'diciembre de 2026'."""
    year, month = parse_period(period)
    return f"{MONTHS_ES[month - 1]} de {year}"


def format_local(instant: datetime, tz: ZoneInfo = BUSINESS_TZ, label: str | None = None) -> str:
    """'2026-12-25 09:00' in `tz`, then ' (label)' when given: instants in English text for ops
    (stage details, timer summaries, the CLI)."""
    text = f"{instant.astimezone(tz):%Y-%m-%d %H:%M}"
    return f"{text} ({label})" if label else text


def business_time(instant: datetime) -> str:
    """An instant in Mexico City time, labelled: how workflows name deadlines for ops."""
    return format_local(instant, BUSINESS_TZ, "Mexico City")


def format_mxn(amount: Decimal) -> str:
    """Decimal('1290') -> '$1,290.00 MXN' (rounded half-up to cents, as invoices do)."""
    if not isinstance(amount, Decimal):
        # Floats would already carry binary rounding noise; ints and strings convert exactly.
        if isinstance(amount, float):
            raise TypeError("format_mxn takes a Decimal, not a float")
        amount = Decimal(amount)
    cents = amount.quantize(_CENTS, rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f} MXN"
