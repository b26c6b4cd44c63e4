"""Time zones used by the business rules.

Workflows must get ZoneInfo objects from here (a module passed through the Temporal sandbox):
a ZoneInfo created at workflow-module level becomes a restricted proxy and breaks astimezone().
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_BUSINESS_TIMEZONE = "America/Mexico_City"


@lru_cache
def zone(name: str = DEFAULT_BUSINESS_TIMEZONE) -> ZoneInfo:
    return ZoneInfo(name)


BUSINESS_TZ = zone(DEFAULT_BUSINESS_TIMEZONE)
