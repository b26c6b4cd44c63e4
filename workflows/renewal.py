"""Monthly renewals: every pending renewal payment is chased up a ladder before the cutoff.

RenewalPaymentWorkflow (one per open charge, started by RenewalCycleWorkflow in
workflows/renewal_cycle.py) waits for the payment against the ladder (notice, reminders, escalation
to ops, final notice) in business local time; at the cutoff (day 26 00:00, Mexico City) an
unpaid charge is AT_RISK and the policy applies: notify ops, or suspend the subscription (a
later payment reactivates it).

Nothing here waits on e-mail: notices go out in the background (`BackgroundNotices`), and one
that cannot be delivered is flagged for ops (OpsAttention NOTICE_UNDELIVERABLE) while the ladder
and the cutoff carry on. A payment that does not cover the charge keeps it open and shows what
is still due. A paid customer the provider does not reactivate is retried, then flagged
(REACTIVATION_FAILED) and e-mailed to ops, and retried every few hours until it works.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.renewal import RenewalActivities
    from csp_core.calendar import format_local
    from csp_core.renewals.billing import (
        REACTIVATION_ESCALATE_AFTER,
        REACTIVATION_GIVE_UP_AFTER,
        REACTIVATION_RETRY_EVERY,
        SUSPENSION_RETRY_HORIZON,
        CutoffPolicy,
        LadderStep,
        StepKind,
        cutoff_at,
        late_payment_deadline,
        remaining_ladder,
    )
    from csp_core.renewals.values import (
        NoticeKind,
        RenewalNotice,
        RenewalRequest,
        RenewalStatus,
    )
    from csp_core.stages import OpsAttention, PaymentStatus
    from csp_core.timezones import zone
    from temporalutil import search_attributes as sa
    from workflows.common import BackgroundNotices, OpsAlerts

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=10))
CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(hours=12),
    retry_policy=RETRY,
)
BOOKKEEPING = dict(start_to_close_timeout=timedelta(seconds=30))
LATE_PAYMENT_CHECK = timedelta(days=1)
# Patch: lateness is decided by when the payment was made (registry or signal), not by whether
# it reached the workflow before the cutoff timer. Histories before it replay the old path.
PAYMENT_TIME_DECIDES = "payment-time-decides-lateness"
# Patch: a step that leaves status and level as they are writes nothing (the opening PENDING
# was written by the cycle), two local activities fewer per renewal.
SKIP_UNCHANGED_STATUS = "skip-unchanged-status-writes"
# Patch: suspension and reactivation failures no longer fail the workflow: reactivation is
# retried, escalated to ops and retried every few hours; a failed suspension is told to ops.
PROVIDER_FAILURES_ESCALATED = "renewal-provider-failures-escalated"
# Patch: a partial payment is acknowledged to the reseller (an e-mail) and keeps the charge open.
PARTIAL_PAYMENTS = "renewal-partial-payments"

# Reactivation: first retried with backoff for REACTIVATION_ESCALATE_AFTER, then every
# REACTIVATION_RETRY_EVERY, each round an activity retried for up to an hour.
REACTIVATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
)
REACTIVATION_ROUND = timedelta(hours=1)

_STATUS_OF_STEP = {
    StepKind.NOTICE: PaymentStatus.PENDING,
    StepKind.REMINDER: PaymentStatus.REMINDED,
    StepKind.ESCALATION: PaymentStatus.ESCALATED,
    StepKind.FINAL_NOTICE: PaymentStatus.ESCALATED,
    StepKind.CUTOFF: PaymentStatus.AT_RISK,
}


@workflow.defn
class RenewalPaymentWorkflow:
    @workflow.init
    def __init__(self, request: RenewalRequest) -> None:
        self._charge = request.charge
        self._policy = request.policy
        self._due_at = cutoff_at(request.charge.period, request.policy)
        self._status = PaymentStatus.PENDING
        self._level = 0
        self._paid = False
        self._reference: str | None = None
        self._paid_at: datetime | None = None
        self._next: LadderStep | None = None
        self._detail = "Waiting for the renewal payment."
        # Partial payments: by reference (a reference is one payment), and the registry's total.
        self._partials: dict[str, Decimal] = {}
        self._recorded_paid = Decimal(0)
        self._alerts = OpsAlerts()
        self._notices = BackgroundNotices(self._alerts, on_change=self._refresh_details)
        self._last_failure = ""

    @workflow.run
    async def run(self, request: RenewalRequest) -> RenewalStatus:
        charge = self._charge
        workflow.upsert_search_attributes(
            [
                sa.SUBSCRIPTION_ID.value_set(charge.subscription_id),
                sa.BILLING_PERIOD.value_set(charge.period),
                sa.CUSTOMER_DOMAIN.value_set(charge.domain),
                sa.RESELLER_ID.value_set(charge.reseller_id),
                sa.PAYMENT_DUE_AT.value_set(self._due_at),
            ]
        )
        await self._set(PaymentStatus.PENDING, 0, "Period opened; waiting for payment.")

        steps = remaining_ladder(charge.period, self._policy, workflow.now())
        for step in steps:
            self._next = step
            if await self._paid_before(step.at):
                if self._paid_late() and workflow.patched(PAYMENT_TIME_DECIDES):
                    # Paid on or after the cutoff, though it reached us before the cutoff step
                    # ran: the day-26 rule is about when it was paid, so the cutoff applies.
                    await self._take(steps[-1])
                return await self._settle()
            await self._take(step)
        self._next = None

        # Past the cutoff: keep waiting for a late payment (it reactivates a suspension).
        deadline = late_payment_deadline(charge.period, self._policy)
        while workflow.now() < deadline:
            if await self._paid_before(min(deadline, workflow.now() + LATE_PAYMENT_CHECK)):
                return await self._settle()
        self._detail = f"Unpaid {self._policy.late_payment_days} days after the cutoff; closed."
        return await self._finish()

    async def _finish(self) -> RenewalStatus:
        """Every notice delivered or given up, then the final details and status."""
        self._next = None
        await self._notices.drain()
        workflow.set_current_details(self._details())
        return self.status()

    async def _take(self, step: LadderStep) -> None:
        status = _STATUS_OF_STEP[step.kind]
        await self._notify(step.kind, reminder_number=step.number)
        if step.kind is not StepKind.CUTOFF:
            await self._set(status, step.level, f"{step.kind.value.replace('_', ' ')} sent.")
            return
        await self._set(status, step.level, "Unpaid at the cutoff: at risk.")
        if self._policy.cutoff_policy is CutoffPolicy.SUSPEND:
            if not workflow.patched(PROVIDER_FAILURES_ESCALATED):
                await workflow.execute_activity_method(
                    RenewalActivities.suspend_subscription,
                    self._charge,
                    summary="Suspend subscription at provider",
                    **CALL,
                )
            elif not await self._suspend():
                return
            await self._set(PaymentStatus.SUSPENDED, step.level, "Suspended for non-payment.")
            await self._notify("suspended")

    async def _suspend(self) -> bool:
        """Suspend at the provider, retried for hours. A failure leaves the charge AT_RISK with
        the subscription running, and ops told (they decide); the chase goes on."""
        try:
            await workflow.execute_activity_method(
                RenewalActivities.suspend_subscription,
                self._charge,
                summary="Suspend subscription at provider",
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=SUSPENSION_RETRY_HORIZON,
                retry_policy=RETRY,
            )
            return True
        except ActivityError as err:
            self._alerts.raise_(OpsAttention.SUSPENSION_FAILED)
            self._detail = (
                f"Unpaid at the cutoff: at risk. Suspension failed ({_cause(err)}); the "
                "subscription is still active; ops were told."
            )
            workflow.set_current_details(self._details())
            await self._notify(NoticeKind.SUSPENSION_FAILED)
            return False

    async def _settle(self) -> RenewalStatus:
        paid = f"Paid ({self._reference or 'no reference'})"
        if self._paid_at is not None:
            when = _local(self._paid_at, self._policy.timezone)
            paid += f" at {when}, {'after' if self._paid_late() else 'before'} the cutoff"
        self._next = None
        if self._status is PaymentStatus.SUSPENDED:
            if not workflow.patched(PROVIDER_FAILURES_ESCALATED):
                await workflow.execute_activity_method(
                    RenewalActivities.reactivate_subscription,
                    self._charge,
                    summary="Reactivate subscription at provider",
                    **CALL,
                )
            elif not await self._reactivate(paid):
                return await self._finish()
            await self._set(PaymentStatus.REACTIVATED, self._level, f"{paid}; reactivated.")
            await self._notify("reactivated")
        else:
            await self._set(PaymentStatus.PAID, self._level, f"{paid}.")
            await self._notify("paid")
        return await self._finish()

    async def _reactivate(self, paid: str) -> bool:
        """Reactivate a paid, suspended subscription. Retried with backoff for a few hours;
        then flagged (REACTIVATION_FAILED), e-mailed to ops, and retried every few hours for
        weeks. PaymentStatus stays SUSPENDED meanwhile: that is what the customer lives with.
        False when it gave up (ops are told again; the flag stays on the closed workflow)."""
        give_up_at = workflow.now() + REACTIVATION_GIVE_UP_AFTER
        self._detail = f"{paid}; reactivating at the provider."
        workflow.set_current_details(self._details())
        if await self._try_reactivate(REACTIVATION_ESCALATE_AFTER):
            return True
        self._alerts.raise_(OpsAttention.REACTIVATION_FAILED)
        await self._notify(NoticeKind.REACTIVATION_FAILED)
        while workflow.now() + REACTIVATION_RETRY_EVERY <= give_up_at:
            retry_at = workflow.now() + REACTIVATION_RETRY_EVERY
            self._detail = (
                f"{paid}; still suspended: the provider has not reactivated it "
                f"({self._last_failure}). Ops were told; next try at "
                f"{_local(retry_at, self._policy.timezone)}."
            )
            workflow.set_current_details(self._details())
            await workflow.sleep(REACTIVATION_RETRY_EVERY, summary="Wait to retry reactivation")
            if await self._try_reactivate(REACTIVATION_ROUND):
                self._alerts.clear(OpsAttention.REACTIVATION_FAILED)
                return True
        self._detail = (
            f"{paid}; still suspended: reactivation failed for "
            f"{REACTIVATION_GIVE_UP_AFTER.days} days ({self._last_failure}). "
            "Reactivate it by hand; ops were told."
        )
        await self._notify(NoticeKind.REACTIVATION_ABANDONED)
        return False

    async def _try_reactivate(self, within: timedelta) -> bool:
        try:
            await workflow.execute_activity_method(
                RenewalActivities.reactivate_subscription,
                self._charge,
                summary="Reactivate subscription at provider",
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=within,
                retry_policy=REACTIVATE_RETRY,
            )
            return True
        except ActivityError as err:
            self._last_failure = _cause(err)
            workflow.logger.warning("reactivation failed: %s", self._last_failure)
            return False

    async def _paid_before(self, at: datetime) -> bool:
        """Wait for the payment signal until `at`; then ask the registry (payments recorded
        without a signal count too)."""
        now = workflow.now()
        if at > now:
            try:
                await workflow.wait_condition(
                    lambda: self._paid,
                    timeout=at - now,
                    timeout_summary=f"Wait for payment until {_local(at, self._policy.timezone)}",
                )
                return True
            except TimeoutError:
                pass
        if not self._paid:
            await self._look_up_payment()
        return self._paid

    async def _look_up_payment(self) -> None:
        args = [self._charge.subscription_id, self._charge.period]
        if not workflow.patched(PAYMENT_TIME_DECIDES):
            # Histories written before the payment's time was looked up.
            reference = await workflow.execute_local_activity_method(
                RenewalActivities.payment_reference, args=args, **BOOKKEEPING
            )
            if reference is not None:
                self._paid, self._reference = True, reference
                self._paid_at = workflow.now()
            return
        seen = await workflow.execute_local_activity_method(
            RenewalActivities.find_payment, args=args, **BOOKKEEPING
        )
        if seen is None:
            return
        if seen.settled:
            self._paid, self._reference, self._paid_at = True, seen.reference, seen.paid_at
        elif seen.amount_paid is not None and seen.amount_paid > self._recorded_paid:
            self._recorded_paid = seen.amount_paid  # partly paid, without a signal
            self._refresh_details()

    def _paid_late(self) -> bool:
        return self._paid_at is not None and self._paid_at >= self._due_at

    @workflow.signal(
        description="A renewal payment was received: reference, when it was paid (default: "
        "when the signal arrives), its amount (default: all that is due, which settles the "
        "charge) and the total the registry has recorded so far for the charge."
    )
    def payment_received(
        self,
        reference: str | None = None,
        paid_at: datetime | None = None,
        amount: Decimal | None = None,
        amount_paid: Decimal | None = None,
    ) -> None:
        if self._paid:
            return  # the payment that settled it is the one that counts
        # Type hints only decode the arguments when all four are sent: older senders (and saved
        # histories) send two, which arrive as JSON values.
        if isinstance(paid_at, str):
            paid_at = datetime.fromisoformat(paid_at)
        amount = None if amount is None else Decimal(str(amount))
        amount_paid = None if amount_paid is None else Decimal(str(amount_paid))
        total = max(amount_paid or Decimal(0), self._recorded_paid)
        if amount is None or total >= self._charge.amount:
            self._paid = True
            self._reference = reference or self._reference
            self._paid_at = paid_at or workflow.now()
            return
        # Partial: the charge stays open; the same reference again changes nothing.
        key = reference or f"payment-{len(self._partials) + 1}"
        if key in self._partials:
            return
        self._partials[key] = amount
        self._recorded_paid = max(total, sum(self._partials.values(), Decimal(0)))
        self._refresh_details()
        asyncio.ensure_future(self._acknowledge_partial(key, amount))

    async def _acknowledge_partial(self, reference: str, amount: Decimal) -> None:
        if workflow.patched(PARTIAL_PAYMENTS):
            await self._notify(
                NoticeKind.PARTIAL_PAYMENT, payment_reference=reference, payment_amount=amount
            )

    def _amount_paid(self) -> Decimal:
        return self._charge.amount if self._paid else self._recorded_paid

    @workflow.query(description="Where the renewal payment stands.")
    def status(self) -> RenewalStatus:
        return RenewalStatus(
            subscription_id=self._charge.subscription_id,
            period=self._charge.period,
            status=self._status,
            escalation_level=self._level,
            due_at=self._due_at,
            next_step=self._next.kind.value if self._next else None,
            next_step_at=self._next.at if self._next else None,
            payment_reference=self._reference,
            paid_at=self._paid_at,
            paid_late=self._paid_late(),
            detail=self._detail,
            amount=self._charge.amount,
            amount_paid=self._amount_paid(),
            amount_due=max(self._charge.amount - self._amount_paid(), Decimal(0)),
            ops_attention=sorted(a.value for a in self._alerts.raised),
        )

    async def _set(self, status: PaymentStatus, level: int, detail: str) -> None:
        unchanged = (status, level) == (self._status, self._level)
        self._status, self._level, self._detail = status, level, detail
        if unchanged and workflow.patched(SKIP_UNCHANGED_STATUS):
            workflow.set_current_details(self._details())
            return
        workflow.upsert_search_attributes(
            [sa.PAYMENT_STATUS.value_set(status.value), sa.ESCALATION_LEVEL.value_set(level)]
        )
        workflow.set_current_details(self._details())
        await workflow.execute_local_activity_method(
            RenewalActivities.record_charge_status,
            args=[self._charge.subscription_id, self._charge.period, status, level],
            **BOOKKEEPING,
        )

    async def _notify(
        self,
        kind: StepKind | str,
        reminder_number: int = 0,
        payment_reference: str | None = None,
        payment_amount: Decimal | None = None,
    ) -> None:
        """Send a notice beside the process: a notice that cannot go out never stops it."""
        label = kind.value if isinstance(kind, StepKind) else kind
        notice = RenewalNotice(
            kind=kind,
            charge=self._charge,
            policy=self._policy,
            reminder_number=reminder_number,
            amount_paid=Decimal(0) if self._paid else self._recorded_paid,
            payment_reference=payment_reference,
            payment_amount=payment_amount,
        )
        await self._notices.send(
            RenewalActivities.notify_renewal, notice, key=notice.key, summary=f"E-mail: {label}"
        )

    def _refresh_details(self) -> None:
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        charge, tz = self._charge, self._policy.timezone
        lines = [
            f"**{self._status.value}** · level {self._level} · subscription "
            f"`{charge.subscription_id}` · {charge.domain} · period {charge.period}",
            f"Amount {charge.amount} MXN, due before {_local(self._due_at, tz)}.",
        ]
        if not self._paid and self._recorded_paid > 0:
            due = max(charge.amount - self._recorded_paid, Decimal(0))
            lines.append(f"Paid {self._recorded_paid} of {charge.amount} MXN; {due} due.")
        lines.append(self._detail)
        if self._alerts.raised:
            lines.append(self._alerts.markdown())
        if self._notices.undeliverable:
            lines.append("Undeliverable e-mail(s): " + ", ".join(self._notices.undeliverable))
        if self._next is not None:
            lines.append(f"Next: {self._next.kind.value} at {_local(self._next.at, tz)}.")
        return "\n\n".join(lines)


def _cause(err: ActivityError) -> str:
    """The innermost failure message of an activity error, in one line."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return (str(cause) or type(cause).__name__).splitlines()[0][:200]


def _local(instant: datetime, timezone: str) -> str:
    return format_local(instant, zone(timezone), "local")
