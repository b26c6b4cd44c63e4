"""How long an order waits for the client to accept us as partner, and when we remind.

A pure function of its inputs (no clock reads), so the workflow can call it deterministically
and tests can pin every instant."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AcceptancePolicy(BaseModel):
    """How long we wait for a client to accept us as partner, and when we remind.

    Snapshotted into the workflow input when an order starts (settings may change later).
    """

    model_config = ConfigDict(frozen=True)

    reminder_days: Annotated[list[int], Field(max_length=20)] = [2, 5, 10]
    expiry_days: Annotated[int, Field(ge=1, le=365)] = 30
    poll_interval: timedelta = timedelta(hours=1)

    @field_validator("reminder_days")
    @classmethod
    def _ascending(cls, days: list[int]) -> list[int]:
        if any(d <= 0 for d in days) or days != sorted(set(days)):
            raise ValueError("reminder days must be positive, ascending and distinct")
        return days

    def deadline(self, waiting_since: datetime) -> datetime:
        return waiting_since + timedelta(days=self.expiry_days)

    def reminder_times(self, waiting_since: datetime) -> list[datetime]:
        """Reminder instants, dropping any that would fall at or after the expiry."""
        deadline = self.deadline(waiting_since)
        times = [waiting_since + timedelta(days=d) for d in self.reminder_days]
        return [t for t in times if t < deadline]
