"""Values that travel through the renewal workflows. Plain pydantic; no Temporal import."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from csp_core.ops.tasks import OpsTask
from csp_core.renewals.billing import RenewalPolicy, StepKind
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
    # A ladder step, or "suspended" / "reactivated" / "paid", or one of NoticeKind below.
    kind: StepKind | str
    charge: RenewalCharge
    policy: RenewalPolicy
    reminder_number: int = 0
    amount_paid: Decimal = Decimal(0)  # paid so far (partial payments): the mail shows what is due
    payment_reference: str | None = None  # the payment a partial-payment notice is about
    payment_amount: Decimal | None = None

    @property
    def key(self) -> str:
        """The notice's idempotency key in the e-mail ledger (and its Message-ID's seed)."""
        kind = self.kind.value if isinstance(self.kind, StepKind) else self.kind
        key = f"{renewal_workflow_id(self.charge.subscription_id, self.charge.period)}:{kind}"
        if self.reminder_number:
            key += f":{self.reminder_number}"
        if self.payment_reference is not None and kind == NoticeKind.PARTIAL_PAYMENT:
            key += f":{self.payment_reference}"
        return key


class NoticeKind(StrEnum):
    """Renewal notices that are not ladder steps (those added with partial payments and the
    reactivation and suspension escalations)."""

    PARTIAL_PAYMENT = "partial_payment"  # to the reseller: received, and what is still due
    REACTIVATION_FAILED = "reactivation_failed"  # to ops: paid, still suspended at the provider
    REACTIVATION_ABANDONED = "reactivation_abandoned"  # to ops: retries stopped, act by hand
    SUSPENSION_FAILED = "suspension_failed"  # to ops: the provider did not suspend


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
    amount: Decimal | None = None
    amount_paid: Decimal = Decimal(0)  # so far; below `amount` while partly paid
    amount_due: Decimal | None = None  # still to pay (0 once settled)
    ops_attention: list[str] = []  # the OpsAttention flags raised on this renewal
    # Operations the provider had no API for, asked of ops: open and answered.
    ops_tasks: list[OpsTask] = []


class PaymentSeen(_Model):
    """A payment the registry shows for a charge: settled (reference and paid_at of the payment
    that completed it), or partly paid (`settled` False, `amount_paid` so far)."""

    reference: str
    paid_at: datetime
    amount_paid: Decimal | None = None  # None in histories from before partial payments
    settled: bool = True


class ChargeFailure(_Model):
    """A charge the cycle could not prepare or start: reported, never retried forever."""

    subscription_id: str
    reason: str


class PreparedCharges(_Model):
    recorded: int
    failed: list[ChargeFailure] = []


class CycleRequest(_Model):
    """Input of the monthly cycle; continue-as-new carries the cursor forward."""

    period: str | None = None  # None: the period of the schedule's start time
    policy: RenewalPolicy = RenewalPolicy()
    after_id: int = 0
    started: int = 0
    charges_prepared: bool = False
    charges_owed: int | None = None  # recorded by the first run, carried to the last
    failed: list[ChargeFailure] = []  # carried forward too
    failed_count: int = 0
    page_size: int = 500  # charges per fan-out activity
    pages_per_run: int = 10  # then continue-as-new, so history stays small at any volume


class CyclePage(_Model):
    last_id: int
    seen: int
    started: int
    failed: list[ChargeFailure] = []


class CycleResult(_Model):
    period: str
    charges_prepared: int | None = None
    renewals_started: int
    failed: list[ChargeFailure] = []  # the first MAX_REPORTED_FAILURES of them
    failed_count: int = 0


# A cycle reports at most this many failed charges by name (history stays small); it counts all.
MAX_REPORTED_FAILURES = 100
