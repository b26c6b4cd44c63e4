"""Monthly renewals: the schedule, running a period by hand, and recording payments."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from csp_core.registry import ChargeRecord, Registry, SeatChangeRecord
from csp_core.renewals.billing import (
    MAX_CHARGE_AMOUNT,
    RenewalPolicy,
    parse_period,
    period_start,
)
from csp_core.renewals.values import (
    CycleRequest,
    CycleResult,
    renewal_cycle_queue,
    renewal_workflow_id,
)
from csp_core.settings import Settings
from csp_core.stages import PaymentStatus
from csp_core.timezones import zone
from workflows.renewal import RenewalPaymentWorkflow
from workflows.renewal_cycle import RenewalCycleWorkflow

SCHEDULE_ID = "renewal-monthly"
CYCLE_HOUR = 8  # local time on day 1: the period opens with the morning's notices


def renewal_policy(settings: Settings) -> RenewalPolicy:
    return RenewalPolicy(
        timezone=settings.business_timezone,
        cutoff_day=settings.payment_cutoff_day,
        reminder_days=settings.renewal_reminder_days,
        escalation_day=settings.renewal_escalation_day,
        final_notice_day=settings.renewal_final_notice_day,
        cutoff_policy=settings.renewal_cutoff_policy,
        opening_delay=timedelta(seconds=settings.renewal_opening_delay_seconds),
    )


def monthly_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RenewalCycleWorkflow.run,
            CycleRequest(policy=renewal_policy(settings)),
            id="renewal-cycle",
            task_queue=renewal_cycle_queue(settings.task_queue),
            static_summary="Monthly renewal cycle: chase every pending renewal payment",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_month=[ScheduleRange(1)],
                    hour=[ScheduleRange(CYCLE_HOUR)],
                    minute=[ScheduleRange(0)],
                    comment=f"day 1, {CYCLE_HOUR:02d}:00 {settings.business_timezone}",
                )
            ],
            time_zone_name=settings.business_timezone,
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(days=7),
            pause_on_failure=False,
        ),
        state=ScheduleState(
            note="Starts RenewalCycleWorkflow for the month; managed by `csp renewals schedule`."
        ),
    )


async def ensure_schedule(client: Client, settings: Settings) -> str:
    """Create the monthly schedule, or update it to the current settings. Returns what it did."""
    schedule = monthly_schedule(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        async def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(update)
        return "updated"


async def backfill(client: Client, period: str, settings: Settings) -> None:
    """Run the schedule's action for a missed period, as if it had fired on day 1."""
    parse_period(period)
    start = period_start(period, settings.business_timezone) + timedelta(hours=CYCLE_HOUR)
    await client.get_schedule_handle(SCHEDULE_ID).backfill(
        ScheduleBackfill(
            start_at=start - timedelta(minutes=1),
            end_at=start + timedelta(minutes=1),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )


async def run_period(client: Client, period: str, settings: Settings) -> WorkflowHandle:
    """Start the cycle of one period by hand. Joins a running cycle; re-running a finished one
    only starts the renewals still missing."""
    parse_period(period)
    return await client.start_workflow(
        RenewalCycleWorkflow.run,
        CycleRequest(period=period, policy=renewal_policy(settings)),
        id=f"renewal-cycle-{period}",
        task_queue=renewal_cycle_queue(settings.task_queue),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"Renewal cycle {period} (started by hand)",
    )


class PaymentInputError(ValueError):
    """A payment's input breaks a rule, found before anything is recorded: names the field."""


# A payment stamped a little ahead of this machine's clock (another system's clock) is taken.
PAID_AT_SKEW = timedelta(minutes=5)


def check_period(value: str, field: str = "--period") -> str:
    try:
        parse_period(value)
    except ValueError as err:
        raise PaymentInputError(f"{field}: {err}") from None
    return value


def parse_amount(value: str | None, field: str = "--amount") -> Decimal | None:
    """An amount paid in MXN, or None (all that is still due)."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise PaymentInputError(f"{field}: not a decimal amount: {value!r}") from None
    if not amount.is_finite() or not 0 < amount <= MAX_CHARGE_AMOUNT:
        raise PaymentInputError(
            f"{field}: must be a positive amount in MXN, at most {MAX_CHARGE_AMOUNT} (got {value})"
        )
    return amount


def parse_paid_at(
    value: str | None, timezone: str, field: str = "--paid-at", now: datetime | None = None
) -> datetime | None:
    """When a payment was made: ISO 8601, business local time when it names no offset; never
    in the future. None: now."""
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise PaymentInputError(
            f"{field}: not an ISO 8601 date and time: {value!r} (e.g. 2026-11-25T17:30)"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone(timezone))
    if instant > (now or datetime.now(UTC)) + PAID_AT_SKEW:
        raise PaymentInputError(f"{field}: a payment cannot be in the future (got {value})")
    return instant


@dataclass(frozen=True)
class PaymentResult:
    charge: ChargeRecord
    newly_paid: bool  # this payment was recorded now (False: the same reference again)
    workflow_signalled: bool

    @property
    def settled(self) -> bool:
        return self.charge.paid_at is not None


async def record_payment(
    client: Client,
    registry: Registry,
    subscription_id: str,
    period: str,
    reference: str,
    amount: Decimal | None = None,
    paid_at: datetime | None = None,
) -> PaymentResult:
    """Record the payment in the registry (idempotent by reference), then tell the renewal
    workflow. `amount` defaults to what is still due. Once the payments cover the charge, the
    workflow learns the payment that completed it and when it was made (the cutoff rule is
    about that instant); a partial payment keeps the charge open, with the amount still due
    (`charge.amount_due`)."""
    charge, newly_paid = await asyncio.to_thread(
        registry.record_payment, subscription_id, period, reference, amount, paid_at
    )
    handle = client.get_workflow_handle_for(
        RenewalPaymentWorkflow.run, renewal_workflow_id(subscription_id, period)
    )
    if charge.paid_at is not None:
        # No amount: this settles it (with the payment that completed it, by payment time).
        args: list[object] = [charge.payment_reference, charge.paid_at, None, charge.amount_paid]
    else:
        payments = await asyncio.to_thread(registry.list_payments, subscription_id, period)
        payment = next(p for p in payments if p.reference == reference)
        args = [reference, payment.paid_at, payment.amount, charge.amount_paid]
    try:
        await handle.signal(RenewalPaymentWorkflow.payment_received, args=args)
        signalled = True
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        signalled = False  # no workflow yet, or already closed: the registry is the record
    return PaymentResult(charge, newly_paid, signalled)


async def cycle_result(handle: WorkflowHandle) -> CycleResult:
    return await handle.result()


def renewal_charges(
    registry: Registry, period: str | None = None, status: PaymentStatus | None = None
) -> list[tuple[ChargeRecord, list[SeatChangeRecord]]]:
    """Renewal charges with the proration lines (seat changes, carried credits) each bills."""
    charges = registry.list_charges(period, status)
    lines: dict[tuple[str, str | None], list[SeatChangeRecord]] = {}
    for change in registry.list_billed_seat_changes(period):
        lines.setdefault((change.subscription_id, change.billed_period), []).append(change)
    return [(c, lines.get((c.subscription_id, c.period), [])) for c in charges]


def charge_json(charge: ChargeRecord, lines: list[SeatChangeRecord]) -> dict[str, Any]:
    """A charge as JSON (`csp renewals status --json`, `GET /v1/renewals`)."""
    return {
        **charge.model_dump(mode="json"),
        "amount_due": str(charge.amount_due),
        "seat_changes": [
            line.model_dump(mode="json", exclude={"id", "subscription_id"}) for line in lines
        ],
    }
