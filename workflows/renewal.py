"""Monthly renewals: every pending renewal payment is chased up a ladder before the cutoff.

RenewalCycleWorkflow (started on day 1 by a Schedule, or by hand for a period) records the
period's charges and starts one RenewalPaymentWorkflow per open charge, page by page, with
continue-as-new keeping its history bounded.

RenewalPaymentWorkflow waits for the payment against the ladder (notice, reminders, escalation
to ops, final notice) in business local time; at the cutoff (day 26 00:00, Mexico City) an
unpaid charge is AT_RISK and the policy applies: notify ops, or suspend the subscription (a
later payment reactivates it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.renewal import RenewalActivities
    from csp_core.billing import (
        CutoffPolicy,
        LadderStep,
        StepKind,
        cutoff_at,
        late_payment_deadline,
        period_of,
        remaining_ladder,
    )
    from csp_core.renewals import (
        CyclePage,
        CycleRequest,
        CycleResult,
        RenewalNotice,
        RenewalRequest,
        RenewalStatus,
    )
    from csp_core.stages import PaymentStatus
    from csp_core.timezones import zone
    from temporalutil import search_attributes as sa

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
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

_STATUS_OF_STEP = {
    StepKind.NOTICE: PaymentStatus.PENDING,
    StepKind.REMINDER: PaymentStatus.REMINDED,
    StepKind.ESCALATION: PaymentStatus.ESCALATED,
    StepKind.FINAL_NOTICE: PaymentStatus.ESCALATED,
    StepKind.CUTOFF: PaymentStatus.AT_RISK,
}


@workflow.defn
class RenewalCycleWorkflow:
    @workflow.run
    async def run(self, request: CycleRequest) -> CycleResult:
        period = request.period or self._scheduled_period(request)
        prepared = request.charges_owed
        if not request.charges_prepared:
            workflow.set_current_details(f"Recording the renewal charges of **{period}**.")
            prepared = await workflow.execute_activity_method(
                RenewalActivities.prepare_charges,
                args=[period, request.policy],
                summary=f"Record charges {period}",
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
        after_id, started = request.after_id, request.started
        for _ in range(request.pages_per_run):
            workflow.set_current_details(
                f"Period **{period}**: {started} renewal workflow(s) started so far."
            )
            page: CyclePage = await workflow.execute_activity_method(
                RenewalActivities.start_renewals_page,
                args=[period, request.policy, after_id, request.page_size],
                summary=f"Start renewals after charge {after_id}",
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            if page.seen == 0:
                workflow.set_current_details(
                    f"Period **{period}** done: {started} renewal workflow(s) started."
                )
                return CycleResult(
                    period=period, charges_prepared=prepared, renewals_started=started
                )
            after_id, started = page.last_id, started + page.started
        workflow.continue_as_new(
            request.model_copy(
                update={
                    "period": period,
                    "after_id": after_id,
                    "started": started,
                    "charges_prepared": True,
                    "charges_owed": prepared,
                }
            )
        )

    @staticmethod
    def _scheduled_period(request: CycleRequest) -> str:
        # A backfilled run starts today but is for the period it was scheduled in.
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        return period_of(scheduled or workflow.now(), request.policy.timezone)


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
            await workflow.execute_activity_method(
                RenewalActivities.suspend_subscription,
                self._charge,
                summary="Suspend subscription at provider",
                **CALL,
            )
            await self._set(PaymentStatus.SUSPENDED, step.level, "Suspended for non-payment.")
            await self._notify("suspended")

    async def _settle(self) -> RenewalStatus:
        paid = f"Paid ({self._reference or 'no reference'})"
        if self._paid_at is not None:
            when = _local(self._paid_at, self._policy.timezone)
            paid += f" at {when}, {'after' if self._paid_late() else 'before'} the cutoff"
        if self._status is PaymentStatus.SUSPENDED:
            await workflow.execute_activity_method(
                RenewalActivities.reactivate_subscription,
                self._charge,
                summary="Reactivate subscription at provider",
                **CALL,
            )
            await self._set(PaymentStatus.REACTIVATED, self._level, f"{paid}; reactivated.")
            await self._notify("reactivated")
        else:
            await self._set(PaymentStatus.PAID, self._level, f"{paid}.")
            await self._notify("paid")
        self._next = None
        workflow.set_current_details(self._details())
        return self.status()

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
        if seen is not None:
            self._paid, self._reference, self._paid_at = True, seen.reference, seen.paid_at

    def _paid_late(self) -> bool:
        return self._paid_at is not None and self._paid_at >= self._due_at

    @workflow.signal(
        description="The renewal payment was received: reference and when it was paid "
        "(both optional; the time defaults to when the signal arrives)."
    )
    def payment_received(
        self, reference: str | None = None, paid_at: datetime | None = None
    ) -> None:
        if self._paid:
            return  # the first payment recorded is the one that counts
        self._paid = True
        self._reference = reference or self._reference
        self._paid_at = paid_at or workflow.now()

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

    async def _notify(self, kind: StepKind | str, reminder_number: int = 0) -> None:
        label = kind.value if isinstance(kind, StepKind) else kind
        await workflow.execute_activity_method(
            RenewalActivities.notify_renewal,
            RenewalNotice(
                kind=kind, charge=self._charge, policy=self._policy, reminder_number=reminder_number
            ),
            summary=f"E-mail: {label}",
            **CALL,
        )

    def _details(self) -> str:
        charge, tz = self._charge, self._policy.timezone
        lines = [
            f"**{self._status.value}** · level {self._level} · subscription "
            f"`{charge.subscription_id}` · {charge.domain} · period {charge.period}",
            f"Amount {charge.amount} MXN, due before {_local(self._due_at, tz)}.",
            self._detail,
        ]
        if self._next is not None:
            lines.append(f"Next: {self._next.kind.value} at {_local(self._next.at, tz)}.")
        return "\n\n".join(lines)


def _local(instant: datetime, timezone: str) -> str:
    return instant.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M") + " (local)"
