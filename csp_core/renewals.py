"""Values that travel through the renewal workflows. Plain pydantic; no Temporal import."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from csp_core.billing import RenewalPolicy, StepKind
from csp_core.stages import PaymentStatus


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


def renewal_workflow_id(subscription_id: str, period: str) -> str:
    return f"renewal-{subscription_id}-{period}"


def renewal_cycle_queue(task_queue: str) -> str:
    """The renewal cycle's own task queue: its fan-out must not wait behind the thousands of
    payment workflows it has just started on the main queue."""
    return f"{task_queue}-renewal-cycle"


class RenewalCharge(_Model):
    """One pending renewal payment and who it concerns."""

    subscription_id: str
    period: str
    amount: Decimal
    tenant_id: str
    domain: str
    company_name: str
    reseller_id: str
    reseller_name: str
    reseller_email: str
    product_name: str
    quantity: int
    order_id: str | None = None


class RenewalRequest(_Model):
    charge: RenewalCharge
    policy: RenewalPolicy = RenewalPolicy()


class RenewalNotice(_Model):
    kind: StepKind | str  # a ladder step, or "suspended" / "reactivated" / "paid"
    charge: RenewalCharge
    policy: RenewalPolicy
    reminder_number: int = 0


class RenewalStatus(_Model):
    subscription_id: str
    period: str
    status: PaymentStatus
    escalation_level: int
    due_at: datetime
    next_step: str | None = None
    next_step_at: datetime | None = None
    payment_reference: str | None = None
    paid_at: datetime | None = None
    paid_late: bool = False  # paid at or after the cutoff
    detail: str = ""


class PaymentSeen(_Model):
    """A payment the registry shows for a charge."""

    reference: str
    paid_at: datetime


class CycleRequest(_Model):
    """Input of the monthly cycle; continue-as-new carries the cursor forward."""

    period: str | None = None  # None: the period of the schedule's start time
    policy: RenewalPolicy = RenewalPolicy()
    after_id: int = 0
    started: int = 0
    charges_prepared: bool = False
    charges_owed: int | None = None  # recorded by the first run, carried to the last
    page_size: int = 500  # charges per fan-out activity
    pages_per_run: int = 10  # then continue-as-new, so history stays small at any volume


class CyclePage(_Model):
    last_id: int
    seen: int
    started: int


class CycleResult(_Model):
    period: str
    charges_prepared: int | None = None
    renewals_started: int
