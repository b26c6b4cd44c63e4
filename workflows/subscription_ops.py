"""Subscription changes the provider has no API for (Ingram's Xvantage: seats, cancel,
auto-renew), asked of ops: the SubscriptionWorkflow's side of ops tasks (workflows/ops_task.py).

The caller of the Update is waiting, and ops may take hours: the change's rules (the 168 h
window, at least one seat, not while suspended) are judged when it is asked, then the Update
answers at once that the change is pending, with the task in the answer and in the details
(`ops_tasks`). Seats, status and auto-renew stay what they are until ops confirm it; then the
registry records it as the API call would have (seats prorated from then; cancelled, and the
reseller told; auto-renew). Declined, the reseller is told it was not made and why. While one
change waits for ops, others are refused with the reason (one at a time, in order).

Deadlines: a cancellation or a seat reduction must be done before the 168 h window closes, so
that is its deadline when it comes first; auto-renew before the term ends.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.subscription import SubscriptionActivities
    from csp_core.calendar import business_time
    from csp_core.ops.tasks import OpsOperation, OpsTask, OpsTaskStatus, task_deadline
    from csp_core.stages import SubscriptionStatus
    from csp_core.subscriptions.values import CancelNotice
    from temporalutil import search_attributes as sa
    from workflows.ops_task import OpsTaskCommands, short_digest
    from workflows.subscription_term import BOOKKEEPING, SubscriptionTerms

# ApplicationError.type of a change refused because another one is waiting for ops.
CHANGE_PENDING = "SubscriptionChangePending"


class ChangeNotOffered(Exception):
    """Raised inside an Update handler (and caught there): the provider has no API for it."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.provider = provider


class SubscriptionOpsChanges(SubscriptionTerms, OpsTaskCommands):
    """Changes made by ops, for SubscriptionWorkflow (which derives from this)."""

    async def _ask_ops(
        self,
        operation: OpsOperation,
        provider: str,
        *,
        seats: int | None = None,
        auto_renew: bool | None = None,
    ) -> OpsTask:
        """Ask ops for the change this Update wants; it is applied once they confirm."""
        info = workflow.current_update_info()
        assert info is not None, "only asked from an update handler"
        now, start = workflow.now(), self._start
        at_the_latest = None
        if operation is OpsOperation.CANCEL or (seats is not None and seats < self._seats):
            at_the_latest = self._cancellable_until  # refused by Microsoft after the window
        elif operation is OpsOperation.SET_AUTO_RENEW:
            at_the_latest = self._term_end_instant  # it renews (or not) then
        task = OpsTask(
            task_id=f"{operation.value}-{short_digest(info.id)}",
            workflow_id=workflow.info().workflow_id,
            operation=operation,
            provider=provider,
            subscription_id=start.subscription_id,
            domain=start.domain,
            product_name=start.product_name,
            company_name=start.company_name,
            reseller_id=start.reseller_id,
            reason=f"reseller {start.reseller_id} asked for it (request {info.id})"[:300],
            asked_at=now,
            deadline=task_deadline(operation, now, at_the_latest),
            seats_before=self._seats if seats is not None else None,
            seats=seats,
            auto_renew=auto_renew,
            change_id=info.id,
        )
        await self._ops.ask(task)
        asyncio.ensure_future(self._apply_when_answered(task.task_id))
        self._show()
        return task

    def _resume_ops_changes(self) -> None:
        """After a continue-as-new: the changes still with ops are followed again."""
        for task in self._ops.open:
            asyncio.ensure_future(self._apply_when_answered(task.task_id))

    def _check_nothing_pending(self) -> None:
        if not (pending := self._ops.open):
            return
        task, sub_id = pending[0], self._start.subscription_id
        raise ApplicationError(
            f"subscription {sub_id} has a change waiting for ops: {task.instruction()} (task "
            f"{task.task_id}, due by {business_time(task.deadline)}). Ask again once ops "
            f"confirmed or declined it (`csp subscription show {sub_id}` shows it)",
            type=CHANGE_PENDING,
        )

    async def _apply_when_answered(self, task_id: str) -> None:
        task = await self._ops.resolved(task_id)
        async with self._changing:  # in order with the other changes and the term's end
            if task.status is OpsTaskStatus.CONFIRMED and not self._status.is_final:
                await self._apply(task)
            elif task.status is OpsTaskStatus.DECLINED:
                start = self._start
                await self._ops.tell_reseller_declined(
                    task, start.reseller_name, start.reseller_email
                )
            self._show()

    async def _apply(self, task: OpsTask) -> None:
        """As if the provider's API had made the change when ops confirmed it."""
        view = await workflow.execute_activity_method(
            SubscriptionActivities.record_confirmed_change,
            args=[self._ref, task],
            summary=f"Registry: {task.operation.value} done by ops",
            **BOOKKEEPING,
        )
        self._ops.noted(task.task_id, view)
        match task.operation:
            case OpsOperation.CHANGE_SEATS:
                assert task.seats is not None
                self._seats = task.seats
                workflow.upsert_search_attributes([sa.SEATS.value_set(self._seats)])
            case OpsOperation.SET_AUTO_RENEW:
                assert task.auto_renew is not None
                self._auto_renew = task.auto_renew
                workflow.upsert_search_attributes([sa.AUTO_RENEW.value_set(self._auto_renew)])
            case OpsOperation.CANCEL:
                self._status = SubscriptionStatus.CANCELLED
                self._cancelled_at = workflow.now()
                workflow.upsert_search_attributes(
                    [sa.SUBSCRIPTION_STATUS.value_set(self._status.value)]
                )
                await self._tell_cancelled()

    async def _tell_cancelled(self) -> None:
        """Cancelled (by the provider's API or by ops): the reseller is told."""
        self._show()
        notice = CancelNotice(
            subscription=self._start, cancelled_at=self._cancelled_at, seats=self._seats
        )
        await self._notices.send(
            SubscriptionActivities.notify_cancelled,
            notice,
            key=notice.key,
            summary="Tell the reseller: cancelled",
        )
