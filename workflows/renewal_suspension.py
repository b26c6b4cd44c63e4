"""Suspending an unpaid subscription at the renewal cutoff and reactivating it once paid: the
steps RenewalPaymentWorkflow (workflows/renewal.py) takes at the provider, or has ops take.

- Through the provider's API: the suspension is retried for hours, then told to ops
  (SUSPENSION_FAILED; the subscription stays active). The reactivation is retried with backoff,
  then flagged (REACTIVATION_FAILED), e-mailed to ops, and retried every few hours for weeks.
- Where the provider has no API for it (Ingram's Xvantage): an ops task (workflows/ops_task.py).
  PaymentStatus AWAITING_OPS until ops confirm they did it by hand; only then SUSPENDED (the
  registry, the subscription's workflow and the reseller follow, as after an API suspension)
  or REACTIVATED. Ops may decline a suspension (it stays AT_RISK and active), never a
  reactivation of a paid charge. A payment while the suspension is still with ops withdraws
  the task: never suspended, PAID.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.renewal import RenewalActivities
    from csp_core.calendar import format_local
    from csp_core.ops.tasks import OpsOperation, OpsTask, OpsTaskStatus, task_deadline
    from csp_core.renewals.billing import (
        REACTIVATION_ESCALATE_AFTER,
        REACTIVATION_GIVE_UP_AFTER,
        REACTIVATION_RETRY_EVERY,
        SUSPENSION_RETRY_HORIZON,
        RenewalPolicy,
    )
    from csp_core.renewals.values import NoticeKind, RenewalCharge
    from csp_core.stages import OpsAttention, PaymentStatus
    from csp_core.timezones import zone
    from workflows.common import OpsAlerts
    from workflows.ops_task import OPS_TASKS, OpsTaskCommands, OpsTasks, not_offered

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=10))
# What ops did by hand, into the registry and the subscription's workflow: until it is recorded.
RECORD = dict(start_to_close_timeout=timedelta(seconds=60), retry_policy=RETRY)
# Reactivation: first retried with backoff for REACTIVATION_ESCALATE_AFTER, then every
# REACTIVATION_RETRY_EVERY, each round an activity retried for up to an hour.
REACTIVATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
)
REACTIVATION_ROUND = timedelta(hours=1)


class SuspensionSteps(OpsTaskCommands):
    """The renewal workflow's suspension and reactivation (a base of RenewalPaymentWorkflow,
    whose state and helpers it uses: annotated here, defined there)."""

    _charge: RenewalCharge
    _policy: RenewalPolicy
    _lean = False  # started with the `renewal-lean` patch (workflows/renewal.py)
    _level: int
    _reference: str | None
    _detail: str
    _last_failure: str
    _alerts: OpsAlerts
    _ops: OpsTasks
    _not_offered_by: str | None  # the provider had no API for the last try
    _suspension_task: str | None  # the ops task asking for the suspension, once asked
    _suspension_applied: bool  # ops' answer to it has been acted on
    _set: Callable[[PaymentStatus, int, str], Awaitable[None]]
    _notify: Callable[..., Awaitable[None]]
    _details: Callable[[], str]

    def _patched(self, name: str) -> bool:
        """Whether to take a patch's new path: every patch before `renewal-lean` is implied by
        it (asked again, each would write its own marker and upsert into the history)."""
        return self._lean or workflow.patched(name)

    def _local_time(self, instant: datetime) -> str:
        return format_local(instant, zone(self._policy.timezone), "local")

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
            if (provider := not_offered(err)) and self._patched(OPS_TASKS):
                await self._ask_ops_to_suspend(provider)
                return False
            self._alerts.raise_(OpsAttention.SUSPENSION_FAILED)
            self._detail = (
                f"Unpaid at the cutoff: at risk. Suspension failed ({_cause(err)}); the "
                "subscription is still active; ops were told."
            )
            workflow.set_current_details(self._details())
            await self._notify(NoticeKind.SUSPENSION_FAILED)
            return False

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
        if self._not_offered_by and self._patched(OPS_TASKS):
            return await self._reactivate_by_ops(paid, self._not_offered_by)
        self._alerts.raise_(OpsAttention.REACTIVATION_FAILED)
        await self._notify(NoticeKind.REACTIVATION_FAILED)
        while workflow.now() + REACTIVATION_RETRY_EVERY <= give_up_at:
            retry_at = workflow.now() + REACTIVATION_RETRY_EVERY
            self._detail = (
                f"{paid}; still suspended: the provider has not reactivated it "
                f"({self._last_failure}). Ops were told; next try at "
                f"{self._local_time(retry_at)}."
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
            self._not_offered_by = not_offered(err)
            workflow.logger.warning("reactivation failed: %s", self._last_failure)
            return False

    # ------------------------------------------------------------------ by ops, by hand
    async def _ask_ops(self, operation: OpsOperation, provider: str, reason: str) -> OpsTask:
        charge = self._charge
        task = OpsTask(
            task_id=f"{operation.value}-{charge.period}",
            workflow_id=workflow.info().workflow_id,
            operation=operation,
            provider=provider,
            subscription_id=charge.subscription_id,
            domain=charge.domain,
            product_name=charge.product_name,
            company_name=charge.company_name,
            reseller_id=charge.reseller_id,
            reason=reason,
            asked_at=workflow.now(),
            deadline=task_deadline(operation, workflow.now()),
            period=charge.period,
        )
        return await self._ops.ask(task)

    async def _ask_ops_to_suspend(self, provider: str) -> None:
        """The provider has no API to suspend: ops do it by hand; SUSPENDED once they confirm
        (AWAITING_OPS until then, the subscription active as far as anyone knows)."""
        task = await self._ask_ops(
            OpsOperation.SUSPEND,
            provider,
            f"the renewal charge of {self._charge.period} is unpaid at the cutoff and the "
            "policy is to suspend",
        )
        self._suspension_task = task.task_id
        await self._set(
            PaymentStatus.AWAITING_OPS,
            self._level,
            f"Unpaid at the cutoff: at risk. {provider} has no API to suspend: ops were asked to "
            f"suspend it by hand (task {task.task_id}, due by "
            f"{self._local_time(task.deadline)}); it is active until they confirm.",
        )

    def _suspension_answered(self) -> bool:
        if self._suspension_task is None or self._suspension_applied:
            return False
        return not self._ops.tasks[self._suspension_task].is_open

    async def _take_suspension_answer(self) -> None:
        """Ops confirmed the suspension (the registry and the subscription's workflow follow,
        and the reseller is told, as after an API suspension), or declined it (AT_RISK)."""
        if not self._suspension_answered():
            return
        assert self._suspension_task is not None
        self._suspension_applied = True
        task = self._ops.tasks[self._suspension_task]
        if task.status is OpsTaskStatus.CONFIRMED:
            view = await workflow.execute_activity_method(
                RenewalActivities.record_suspension,
                self._charge,
                summary="Record the suspension ops made",
                **RECORD,
            )
            self._ops.noted(task.task_id, view)
            await self._set(
                PaymentStatus.SUSPENDED,
                self._level,
                f"Suspended for non-payment by ops in {task.provider}'s portal (reference "
                f"{task.reference}).",
            )
            await self._notify("suspended")
        elif task.status is OpsTaskStatus.DECLINED:
            await self._set(
                PaymentStatus.AT_RISK,
                self._level,
                f"Unpaid at the cutoff: at risk. Ops did not suspend it ({task.note}); the "
                "subscription stays active.",
            )

    async def _suspension_overtaken_by_payment(self) -> None:
        """Paid while the suspension was with ops: an open task is withdrawn (never suspended:
        PAID); one ops confirmed is recorded first (then it is reactivated)."""
        assert self._suspension_task is not None
        task = self._ops.tasks[self._suspension_task]
        if task.is_open:
            self._suspension_applied = True
            await self._ops.withdraw(
                task.task_id, f"the charge was paid ({self._reference or 'no reference'})"
            )
        else:
            await self._take_suspension_answer()

    async def _reactivate_by_ops(self, paid: str, provider: str) -> bool:
        """The provider has no API to reactivate: ops must do it by hand (they cannot decline
        it: the customer paid). AWAITING_OPS until they confirm; then the registry and the
        subscription's workflow follow."""
        task = await self._ask_ops(
            OpsOperation.REACTIVATE,
            provider,
            f"the renewal charge of {self._charge.period} was paid and the subscription is "
            "suspended",
        )
        await self._set(
            PaymentStatus.AWAITING_OPS,
            self._level,
            f"{paid}; still suspended: {provider} has no API to reactivate, ops were asked to "
            f"reactivate it by hand (task {task.task_id}, due by "
            f"{self._local_time(task.deadline)}).",
        )
        task = await self._ops.resolved(task.task_id)
        view = await workflow.execute_activity_method(
            RenewalActivities.record_reactivation,
            self._charge,
            summary="Record the reactivation ops made",
            **RECORD,
        )
        self._ops.noted(task.task_id, view)
        return True


def _cause(err: ActivityError) -> str:
    """The innermost failure message of an activity error, in one line."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return (str(cause) or type(cause).__name__).splitlines()[0][:200]
