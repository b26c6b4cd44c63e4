"""Ops tasks: an operation the provider has no API for (Ingram's Xvantage: suspend, reactivate,
seats, cancel, auto-renew), asked of ops, who do it by hand in the provider's portal and confirm
it to the workflow that asked (an Update). Until they confirm, nothing claims it was done.

Here are the task as a value, and the one home of its timing rules: when it is due
(`OPS_TASK_POLICIES`: within how long, capped by when it must be done at the latest, e.g. the
end of the 168 h window for a cancellation), when ops are reminded before that, and the daily
reminders once it is overdue. Pure functions of their inputs: workflows use them
deterministically and tests pin every instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class OpsOperation(StrEnum):
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    CHANGE_SEATS = "change_seats"
    CANCEL = "cancel"
    SET_AUTO_RENEW = "set_auto_renew"


class OpsTaskStatus(StrEnum):
    OPEN = "OPEN"  # asked, not confirmed yet: nothing happened as far as the system knows
    CONFIRMED = "CONFIRMED"  # ops did it at the provider (their reference); the workflow goes on
    DECLINED = "DECLINED"  # ops could not, or decided not to (their reason): it was not done
    WITHDRAWN = "WITHDRAWN"  # no longer needed (paid meanwhile, the subscription ended)

    @property
    def is_final(self) -> bool:
        return self is not OpsTaskStatus.OPEN


@dataclass(frozen=True)
class OpsTaskPolicy:
    within: timedelta  # due this long after it was asked (capped by a hard limit, if any)
    remind_every: timedelta  # reminders before it is due, counted from when it was asked
    declinable: bool  # ops may answer that it was not done (else they must do it)


# Per operation. Reactivation is the urgent one: the customer paid and has no access. A
# suspension is due within a day of the cutoff; ops may decide not to suspend (the customer
# promised to pay). Seat changes and cancellation within a business day, and never after the
# 168 h window (a cancellation or a seat reduction is only accepted inside it); auto-renew
# within three days, and never after the term's end (then it has renewed already).
OPS_TASK_POLICIES: dict[OpsOperation, OpsTaskPolicy] = {
    OpsOperation.SUSPEND: OpsTaskPolicy(timedelta(hours=24), timedelta(hours=4), True),
    OpsOperation.REACTIVATE: OpsTaskPolicy(timedelta(hours=4), timedelta(hours=1), False),
    OpsOperation.CHANGE_SEATS: OpsTaskPolicy(timedelta(hours=24), timedelta(hours=4), True),
    OpsOperation.CANCEL: OpsTaskPolicy(timedelta(hours=24), timedelta(hours=4), True),
    OpsOperation.SET_AUTO_RENEW: OpsTaskPolicy(timedelta(hours=72), timedelta(hours=12), True),
}
# Once overdue: escalated at the deadline, then reminded this often until someone answers.
OVERDUE_REMIND_EVERY = timedelta(hours=24)
# What ops type as their reference (the portal's ticket or confirmation number) and note.
REFERENCE_MAX = 128
NOTE_MAX = 500


def task_deadline(
    operation: OpsOperation, asked_at: datetime, at_the_latest: datetime | None = None
) -> datetime:
    """When the task is due: `within` after it was asked, or `at_the_latest` when earlier (the
    instant after which the operation cannot be done any more)."""
    due = asked_at + OPS_TASK_POLICIES[operation].within
    return min(due, at_the_latest) if at_the_latest is not None else due


class OpsTask(BaseModel):
    """One operation asked of ops, with the exact values they need, and its outcome."""

    model_config = ConfigDict(frozen=True)

    task_id: str  # unique within its workflow, e.g. suspend-2026-05, seats-1a2b3c4d
    workflow_id: str
    operation: OpsOperation
    provider: str  # whose portal: "Ingram Micro Xvantage"
    subscription_id: str
    domain: str
    product_name: str
    company_name: str
    reseller_id: str
    reason: str  # why it is asked, in English (for ops and the details)
    asked_at: datetime
    deadline: datetime
    # The values of the change (per operation): the renewal period of a suspension or
    # reactivation, the seats before and after, the auto-renew wanted, the caller's request id.
    period: str | None = None
    seats_before: int | None = None
    seats: int | None = None
    auto_renew: bool | None = None
    change_id: str | None = None
    status: OpsTaskStatus = OpsTaskStatus.OPEN
    reminders_sent: int = 0  # before the deadline
    overdue: bool = False  # escalated at the deadline
    overdue_reminders_sent: int = 0
    reference: str | None = None  # ops' reference when confirmed
    note: str | None = None  # ops' note (confirmed), or their reason (declined), or why withdrawn
    closed_at: datetime | None = None
    provider_view: str | None = None  # what the provider showed after confirmation, if it differs

    @property
    def policy(self) -> OpsTaskPolicy:
        return OPS_TASK_POLICIES[self.operation]

    @property
    def is_open(self) -> bool:
        return self.status is OpsTaskStatus.OPEN

    def next_reminder(self) -> tuple[datetime, ReminderKind]:
        """The next thing to send while the task is open: a reminder every `remind_every`
        from when it was asked (strictly before the deadline), the escalation at the deadline,
        then an overdue reminder every OVERDUE_REMIND_EVERY."""
        if not self.overdue:
            at = self.asked_at + self.policy.remind_every * (self.reminders_sent + 1)
            if at < self.deadline:
                return at, ReminderKind.REMINDER
            return self.deadline, ReminderKind.OVERDUE
        return (
            self.deadline + OVERDUE_REMIND_EVERY * (self.overdue_reminders_sent + 1),
            ReminderKind.STILL_OVERDUE,
        )

    def values(self) -> list[tuple[str, str]]:
        """The exact values ops need at the portal, labelled in English."""
        rows = [
            ("subscription", self.subscription_id),
            ("tenant", self.domain),
            ("product", self.product_name),
            ("customer", self.company_name),
        ]
        match self.operation:
            case OpsOperation.SUSPEND | OpsOperation.REACTIVATE:
                rows.append(("renewal period", self.period or "-"))
            case OpsOperation.CHANGE_SEATS:
                rows.append(("seats", f"{self.seats_before} -> {self.seats} (total)"))
            case OpsOperation.SET_AUTO_RENEW:
                rows.append(("auto-renew", "on" if self.auto_renew else "off"))
        return rows

    def instruction(self) -> str:
        """What to do, in one English line (details, CLI)."""
        sub = f"subscription {self.subscription_id} ({self.product_name}) on {self.domain}"
        match self.operation:
            case OpsOperation.SUSPEND:
                what = f"Suspend {sub}"
            case OpsOperation.REACTIVATE:
                what = f"Reactivate {sub}"
            case OpsOperation.CHANGE_SEATS:
                what = f"Set the seats of {sub} to {self.seats} (now {self.seats_before})"
            case OpsOperation.CANCEL:
                what = f"Cancel {sub}"
            case OpsOperation.SET_AUTO_RENEW:
                what = f"Turn auto-renew {'on' if self.auto_renew else 'off'} for {sub}"
        return f"{what} in {self.provider}'s portal"


class ReminderKind(StrEnum):
    REMINDER = "reminder"  # before the deadline
    OVERDUE = "overdue"  # the escalation at the deadline
    STILL_OVERDUE = "still_overdue"  # every day after it


class OpsNoticeKind(StrEnum):
    ASKED = "asked"  # to ops: the task, its values, its deadline, how to confirm
    REMINDER = "reminder"
    OVERDUE = "overdue"
    STILL_OVERDUE = "still_overdue"
    WITHDRAWN = "withdrawn"  # to ops: no longer needed, and why
    DECLINED = "declined"  # to the reseller: the change they asked for was not made


class OpsTaskNotice(BaseModel):
    """An e-mail about an ops task. One per task, kind and number (ledger key)."""

    model_config = ConfigDict(frozen=True)

    kind: OpsNoticeKind
    task: OpsTask
    number: int = 0  # the reminder's number
    # Who the reseller is, for a DECLINED notice.
    reseller_name: str | None = None
    reseller_email: str | None = None

    @property
    def key(self) -> str:
        key = f"{self.task.workflow_id}:ops-{self.task.task_id}:{self.kind.value}"
        return f"{key}-{self.number}" if self.number else key


__all__ = [
    "NOTE_MAX",
    "OPS_TASK_POLICIES",
    "OVERDUE_REMIND_EVERY",
    "REFERENCE_MAX",
    "OpsNoticeKind",
    "OpsOperation",
    "OpsTask",
    "OpsTaskNotice",
    "OpsTaskPolicy",
    "OpsTaskStatus",
    "ReminderKind",
    "task_deadline",
]
