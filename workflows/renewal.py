"""Monthly renewals: every pending renewal payment is chased up a ladder before the cutoff.

RenewalPaymentWorkflow (one per open charge, started by RenewalCycleWorkflow in
workflows/renewal_cycle.py) waits for the payment against the ladder (notice, reminders, escalation
to ops, final notice) in business local time; at the cutoff (day 26 00:00, Mexico City) an
unpaid charge is AT_RISK and the policy applies: notify ops, or suspend the subscription (a
later payment reactivates it).

Nothing here waits on e-mail: notices go out in the background (`BackgroundNotices`), and one
that cannot be delivered is flagged for ops (OpsAttention NOTICE_UNDELIVERABLE) while the ladder
and the cutoff carry on. A payment that does not cover the charge keeps it open and shows what
is still due. Suspension and reactivation (workflows/renewal_suspension.py) go through the
provider's API, retried and escalated; where the provider has none (Ingram), ops do them by hand
and confirm them (an ops task; PaymentStatus AWAITING_OPS until then).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.renewal import RenewalActivities
    from csp_core.renewals.billing import (
        CutoffPolicy,
        LadderStep,
        StepKind,
        cutoff_at,
        late_payment_deadline,
        remaining_ladder,
    )
    from csp_core.renewals.values import (
        NoticeKind,
        PaymentSeen,
        RenewalNotice,
        RenewalRequest,
        RenewalStatus,
    )
    from csp_core.stages import PaymentStatus
    from temporalutil import search_attributes as sa
    from workflows.common import OpsAlerts
    from workflows.ops_task import OpsTasks
    from workflows.renewal_notices import RenewalNotices
    from workflows.renewal_suspension import RETRY, SuspensionSteps

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
# Patch, asked once as a renewal starts: every patch above is implied (each asked on its own
# costs a marker and a search-attribute upsert in every new history); the opening upsert is
# skipped when the cycle started it with those search attributes already (notices:
# workflows/renewal_notices.py). A renewal opens in 14 events instead of 19.
RENEWAL_LEAN = "renewal-lean"
# Patch, asked before `renewal-lean` and implying it (one marker per new history): the opening
# notice's activity looks the payment up itself (send_opening_notice) instead of a local
# activity before it; paid already, it sends nothing and the workflow settles. One activity
# and one workflow activation fewer per renewal; 13 events instead of 14.
RENEWAL_LEAN_2 = "renewal-lean-2"

_STATUS_OF_STEP = {
    StepKind.NOTICE: PaymentStatus.PENDING,
    StepKind.REMINDER: PaymentStatus.REMINDED,
    StepKind.ESCALATION: PaymentStatus.ESCALATED,
    StepKind.FINAL_NOTICE: PaymentStatus.ESCALATED,
    StepKind.CUTOFF: PaymentStatus.AT_RISK,
}


@workflow.defn
class RenewalPaymentWorkflow(SuspensionSteps):
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
        self._notices = RenewalNotices(self._alerts, on_change=self._refresh_details)
        self._last_failure = ""
        self._not_offered_by: str | None = None  # the provider had no API for the last try
        # Operations the provider has no API for, asked of ops (workflows/ops_task.py).
        self._ops = OpsTasks(self._alerts, self._notices, on_change=self._refresh_details)
        self._suspension_task: str | None = None
        self._suspension_applied = False  # ops' answer to it has been acted on
        self._closing = False  # _finish has begun: a late look-up changes nothing any more

    @workflow.run
    async def run(self, request: RenewalRequest) -> RenewalStatus:
        charge = self._charge
        lean2 = workflow.patched(RENEWAL_LEAN_2)
        self._lean = self._notices.lean = lean2 or workflow.patched(RENEWAL_LEAN)
        opening = [
            sa.SUBSCRIPTION_ID.value_set(charge.subscription_id),
            sa.BILLING_PERIOD.value_set(charge.period),
            sa.CUSTOMER_DOMAIN.value_set(charge.domain),
            sa.RESELLER_ID.value_set(charge.reseller_id),
            sa.PAYMENT_DUE_AT.value_set(self._due_at),
        ]
        if not (self._lean and self._started_with(opening)):
            workflow.upsert_search_attributes(opening)
        await self._set(PaymentStatus.PENDING, 0, "Period opened; waiting for payment.")

        steps = remaining_ladder(charge.period, self._policy, workflow.now())
        for step in steps:
            self._next = step
            # renewal-lean-2: the opening notice's activity looks the payment up itself (paid
            # already: no notice, and the wait for the next step ends at once).
            notice_looks_up = lean2 and step.kind is StepKind.NOTICE
            if self._paid if notice_looks_up else await self._paid_before(step.at):
                if self._paid_late() and self._patched(PAYMENT_TIME_DECIDES):
                    # Paid on or after the cutoff, though it reached us before the cutoff step
                    # ran: the day-26 rule is about when it was paid, so the cutoff applies.
                    await self._take(steps[-1])
                return await self._settle()
            await self._take(step, looks_up_payment=notice_looks_up)
        self._next = None

        # Past the cutoff: keep waiting for a late payment (it reactivates a suspension).
        deadline = late_payment_deadline(charge.period, self._policy)
        while workflow.now() < deadline:
            if await self._paid_before(min(deadline, workflow.now() + LATE_PAYMENT_CHECK)):
                return await self._settle()
            await self._take_suspension_answer()  # ops answered the suspension task meanwhile
        self._detail = f"Unpaid {self._policy.late_payment_days} days after the cutoff; closed."
        return await self._finish()

    @staticmethod
    def _started_with(updates: list[SearchAttributeUpdate]) -> bool:
        """The workflow was started with these search attributes (the cycle sets them)."""
        given = workflow.info().typed_search_attributes
        return all(given.get(u.key) == u.value for u in updates)

    async def _finish(self) -> RenewalStatus:
        """Every notice delivered or given up, then the final details and status."""
        self._next = None
        self._closing = True
        await self._ops.withdraw_all("the renewal workflow closed")
        await self._notices.drain()
        workflow.set_current_details(self._details())
        return self.status()

    async def _take(self, step: LadderStep, *, looks_up_payment: bool = False) -> None:
        status = _STATUS_OF_STEP[step.kind]
        await self._notify(
            step.kind, reminder_number=step.number, looks_up_payment=looks_up_payment
        )
        if step.kind is not StepKind.CUTOFF:
            await self._set(status, step.level, f"{step.kind.value.replace('_', ' ')} sent.")
            return
        await self._set(status, step.level, "Unpaid at the cutoff: at risk.")
        if self._policy.cutoff_policy is CutoffPolicy.SUSPEND:
            if not self._patched(PROVIDER_FAILURES_ESCALATED):
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

    async def _settle(self) -> RenewalStatus:
        paid = f"Paid ({self._reference or 'no reference'})"
        if self._paid_at is not None:
            when = self._local_time(self._paid_at)
            paid += f" at {when}, {'after' if self._paid_late() else 'before'} the cutoff"
        self._next = None
        if self._suspension_task is not None:
            await self._suspension_overtaken_by_payment()
        if self._status is PaymentStatus.SUSPENDED:
            if not self._patched(PROVIDER_FAILURES_ESCALATED):
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

    async def _paid_before(self, at: datetime) -> bool:
        """Wait for the payment signal until `at`; then ask the registry (payments recorded
        without a signal count too)."""
        now = workflow.now()
        if at > now:
            try:
                await workflow.wait_condition(
                    lambda: self._paid or self._suspension_answered(),
                    timeout=at - now,
                    timeout_summary=f"Wait for payment until {self._local_time(at)}",
                )
                # Woken by ops answering the suspension task: the caller acts on it, then waits.
                return self._paid
            except TimeoutError:
                pass
        if not self._paid:
            await self._look_up_payment()
        return self._paid

    async def _look_up_payment(self) -> None:
        args = [self._charge.subscription_id, self._charge.period]
        if not self._patched(PAYMENT_TIME_DECIDES):
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
        if seen is not None:
            self._note_payment(seen)

    def _seen_at_opening(self, seen: PaymentSeen | None) -> None:
        """What the opening notice's activity found, taken as the look-up's finding; a payment
        signalled meanwhile counts first. Paid: the wait for the next step ends at once."""
        if seen is not None and not (self._paid or self._closing):
            self._note_payment(seen)

    def _note_payment(self, seen: PaymentSeen) -> None:
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
        if self._patched(PARTIAL_PAYMENTS):
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
            ops_tasks=list(self._ops.tasks.values()),
        )

    async def _set(self, status: PaymentStatus, level: int, detail: str) -> None:
        unchanged = (status, level) == (self._status, self._level)
        self._status, self._level, self._detail = status, level, detail
        if unchanged and self._patched(SKIP_UNCHANGED_STATUS):
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
        looks_up_payment: bool = False,
    ) -> None:
        """Send a notice beside the process: a notice that cannot go out never stops it. The
        opening one under renewal-lean-2 looks the payment up and reports what it saw."""
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
        if looks_up_payment:
            activity, on_result = RenewalActivities.send_opening_notice, self._seen_at_opening
        else:
            activity, on_result = RenewalActivities.notify_renewal, None
        await self._notices.send(
            activity, notice, key=notice.key, summary=f"E-mail: {label}", on_result=on_result
        )

    def _refresh_details(self) -> None:
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        charge = self._charge
        lines = [
            f"**{self._status.value}** · level {self._level} · subscription "
            f"`{charge.subscription_id}` · {charge.domain} · period {charge.period}",
            f"Amount {charge.amount} MXN, due before {self._local_time(self._due_at)}.",
        ]
        if not self._paid and self._recorded_paid > 0:
            due = max(charge.amount - self._recorded_paid, Decimal(0))
            lines.append(f"Paid {self._recorded_paid} of {charge.amount} MXN; {due} due.")
        lines.append(self._detail)
        lines.extend(self._ops.markdown())
        if self._alerts.raised:
            lines.append(self._alerts.markdown())
        if self._notices.undeliverable:
            lines.append("Undeliverable e-mail(s): " + ", ".join(self._notices.undeliverable))
        if self._next is not None:
            lines.append(f"Next: {self._next.kind.value} at {self._local_time(self._next.at)}.")
        return "\n\n".join(lines)
