"""Ops tasks, the workflow side: when a provider activity fails because the provider has no API
for the operation (PROVIDER_NOT_OFFERED; Ingram's Xvantage for suspend, reactivate, seats,
cancel, auto-renew), the workflow asks ops to do it by hand and waits for their word.

- `OpsTasks` keeps a workflow's tasks: asking (an e-mail to ops with the exact values, the
  deadline and the command that confirms it; OpsAttention OPS_ACTION_REQUIRED), reminding at
  each reminder instant, escalating at the deadline (OPS_TASK_OVERDUE, an e-mail, then one a
  day), and closing: confirmed, declined, or withdrawn when it is no longer needed. The timing
  rules live in csp_core/ops/tasks.py. A task past its deadline stays open and undone: nothing
  here ever takes silence for success.
- `OpsTaskCommands` (a base of the workflows that ask) gives ops the Updates
  `confirm_ops_task(task_id, reference, note)` and `decline_ops_task(task_id, reason)`, whose
  validators refuse an unknown or closed task with the reason, and the query `ops_tasks`.

What a confirmation leads to is the asking workflow's business (it waits for `resolved()` and
then proceeds as if the provider call had succeeded).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.common import PROVIDER_NOT_OFFERED
    from activities.ops import OpsActivities
    from csp_core.calendar import business_time
    from csp_core.ops.tasks import (
        NOTE_MAX,
        REFERENCE_MAX,
        OpsNoticeKind,
        OpsTask,
        OpsTaskNotice,
        OpsTaskStatus,
        ReminderKind,
    )
    from csp_core.stages import OpsAttention
    from workflows.common import BackgroundNotices, OpsAlerts

# Patch: an operation the provider has no API for becomes an ops task, applied once ops confirm
# it. Before it, that failure was a refused change (subscriptions) or SUSPENSION_FAILED /
# REACTIVATION_FAILED (renewals): histories that went that way replay that way.
OPS_TASKS = "ops-confirmation-tasks"
# ApplicationError.type of a refused confirmation or decline (the validators).
OPS_TASK_REFUSED = "OpsTaskRefused"

_NOTICE_OF = {
    ReminderKind.REMINDER: OpsNoticeKind.REMINDER,
    ReminderKind.OVERDUE: OpsNoticeKind.OVERDUE,
    ReminderKind.STILL_OVERDUE: OpsNoticeKind.STILL_OVERDUE,
}


def not_offered(err: ActivityError) -> str | None:
    """The provider's name when the activity failed because it has no API for the operation."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == PROVIDER_NOT_OFFERED:
        return str(cause.details[0]) if cause.details else "the provider"
    return None


def short_digest(text: str) -> str:
    """8 hex digits naming a task after its request (deterministic: a plain hash)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class OpsTasks:
    """A workflow's ops tasks, by task id (the open ones and those already answered)."""

    def __init__(
        self,
        alerts: OpsAlerts,
        notices: BackgroundNotices,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.tasks: dict[str, OpsTask] = {}
        self._alerts = alerts
        self._notices = notices
        self._on_change = on_change or (lambda: None)

    # ------------------------------------------------------------------ asking
    async def ask(self, task: OpsTask) -> OpsTask:
        """Open the task: e-mail ops, raise OPS_ACTION_REQUIRED, remind and escalate on time."""
        self.tasks[task.task_id] = task
        self._changed()
        await self._send(OpsNoticeKind.ASKED, task)
        asyncio.ensure_future(self._follow(task.task_id))
        return task

    def resume(self, tasks: Iterable[OpsTask]) -> None:
        """Tasks carried over a continue-as-new: the open ones are followed again (the e-mail
        asking for them went out in an earlier run)."""
        for task in tasks:
            self.tasks[task.task_id] = task
            if task.is_open:
                asyncio.ensure_future(self._follow(task.task_id))
        self._changed()

    async def _follow(self, task_id: str) -> None:
        """Reminders at their instants, the escalation at the deadline, daily after it; until
        the task is answered or withdrawn."""
        while (task := self.tasks[task_id]).is_open:
            at, kind = task.next_reminder()
            timeout = at - workflow.now()
            if timeout.total_seconds() > 0:
                try:
                    await workflow.wait_condition(
                        lambda: not self.tasks[task_id].is_open,
                        timeout=timeout,
                        timeout_summary=f"Ops task {task_id}: {kind.value} at {business_time(at)}",
                    )
                    return  # answered or withdrawn
                except TimeoutError:
                    pass
            task = self.tasks[task_id]
            if not task.is_open:
                return
            match kind:
                case ReminderKind.REMINDER:
                    task = task.model_copy(update={"reminders_sent": task.reminders_sent + 1})
                    number = task.reminders_sent
                case ReminderKind.OVERDUE:
                    task = task.model_copy(update={"overdue": True})
                    number = 0
                case ReminderKind.STILL_OVERDUE:
                    count = task.overdue_reminders_sent + 1
                    task = task.model_copy(update={"overdue_reminders_sent": count})
                    number = count
            self.tasks[task_id] = task
            self._changed()
            await self._send(_NOTICE_OF[kind], task, number)

    # ------------------------------------------------------------------ answers
    def check(self, task_id: str, *, declining: bool = False) -> OpsTask:
        """Whether the task can be confirmed (or declined) now; else the reason, for ops."""
        task = self.tasks.get(task_id)
        if task is None:
            open_ids = ", ".join(t.task_id for t in self.open) or "none"
            raise ApplicationError(
                f"no ops task {task_id!r} in this workflow (open tasks here: {open_ids}); "
                "`csp ops tasks` lists every open one",
                type=OPS_TASK_REFUSED,
            )
        if not task.is_open:
            when = business_time(task.closed_at) if task.closed_at else "earlier"
            said = f" (reference {task.reference})" if task.reference else ""
            why = f": {task.note}" if task.note else ""
            raise ApplicationError(
                f"ops task {task_id} was already {task.status.value} at {when}{said}{why}; "
                "nothing is left to answer",
                type=OPS_TASK_REFUSED,
            )
        if declining and not task.policy.declinable:
            raise ApplicationError(
                f"ops task {task_id} cannot be declined: {task.instruction()} must be done "
                f"({task.reason}). Do it, then confirm it with `csp ops confirm "
                f"{task.workflow_id} {task_id} --reference <ref>`",
                type=OPS_TASK_REFUSED,
            )
        return task

    @staticmethod
    def check_text(name: str, value: str | None, limit: int, *, required: bool) -> None:
        text = (value or "").strip()
        if required and not text:
            raise ApplicationError(f"{name} is required", type=OPS_TASK_REFUSED)
        if len(text) > limit or any(ord(c) < 32 for c in text):
            raise ApplicationError(
                f"{name} must be one line of at most {limit} characters", type=OPS_TASK_REFUSED
            )

    def confirm(self, task_id: str, reference: str, note: str | None) -> OpsTask:
        task = self.check(task_id).model_copy(
            update={
                "status": OpsTaskStatus.CONFIRMED,
                "reference": reference.strip(),
                "note": (note or "").strip() or None,
                "closed_at": workflow.now(),
            }
        )
        self.tasks[task_id] = task
        self._changed()
        return task

    def decline(self, task_id: str, reason: str) -> OpsTask:
        task = self.check(task_id, declining=True).model_copy(
            update={
                "status": OpsTaskStatus.DECLINED,
                "note": reason.strip(),
                "closed_at": workflow.now(),
            }
        )
        self.tasks[task_id] = task
        self._changed()
        return task

    async def withdraw(self, task_id: str, why: str) -> None:
        """No longer needed (paid meanwhile, the subscription ended): ops are told."""
        task = self.tasks.get(task_id)
        if task is None or not task.is_open:
            return
        task = task.model_copy(
            update={"status": OpsTaskStatus.WITHDRAWN, "note": why, "closed_at": workflow.now()}
        )
        self.tasks[task_id] = task
        self._changed()
        await self._send(OpsNoticeKind.WITHDRAWN, task)

    async def withdraw_all(self, why: str) -> None:
        for task in self.open:
            await self.withdraw(task.task_id, why)

    def noted(self, task_id: str, provider_view: str | None) -> None:
        """What the provider showed once the confirmed operation was applied (when it differs
        from what ops confirmed: its view may lag, or something is wrong)."""
        if provider_view:
            self.tasks[task_id] = self.tasks[task_id].model_copy(
                update={"provider_view": provider_view}
            )
            self._changed()

    async def resolved(self, task_id: str) -> OpsTask:
        """Wait until ops answered (or the task was withdrawn)."""
        await workflow.wait_condition(lambda: not self.tasks[task_id].is_open)
        return self.tasks[task_id]

    # ------------------------------------------------------------------ reads
    @property
    def open(self) -> list[OpsTask]:
        return [task for task in self.tasks.values() if task.is_open]

    def markdown(self) -> list[str]:
        """Lines for the current details: each open task, what to do and how to confirm."""
        lines = []
        for task in self.open:
            due = business_time(task.deadline)
            state = f"**OVERDUE** since {due}" if task.overdue else f"due by {due}"
            lines.append(
                f"**Ops task `{task.task_id}`** ({state}): {task.instruction()}. Why: "
                f"{task.reason}. Confirm: `csp ops confirm {task.workflow_id} {task.task_id} "
                "--reference <ref>`"
            )
        return lines

    # ------------------------------------------------------------------ inside
    def _changed(self) -> None:
        open_tasks = self.open
        for flag, wanted in (
            (OpsAttention.OPS_ACTION_REQUIRED, bool(open_tasks)),
            (OpsAttention.OPS_TASK_OVERDUE, any(t.overdue for t in open_tasks)),
        ):
            if wanted:
                self._alerts.raise_(flag)
            else:
                self._alerts.clear(flag)
        self._on_change()

    async def _send(
        self,
        kind: OpsNoticeKind,
        task: OpsTask,
        number: int = 0,
        *,
        reseller: tuple[str, str] | None = None,
    ) -> None:
        notice = OpsTaskNotice(
            kind=kind,
            task=task,
            number=number,
            reseller_name=reseller[0] if reseller else None,
            reseller_email=reseller[1] if reseller else None,
        )
        label = kind.value.replace("_", " ") + (f" {number}" if number else "")
        await self._notices.send(
            OpsActivities.notify_ops_task,
            notice,
            key=notice.key,
            summary=f"E-mail ops task {task.task_id}: {label}",
        )

    async def tell_reseller_declined(self, task: OpsTask, name: str, email: str) -> None:
        """The reseller asked for the change: it was not made (ops' reason)."""
        await self._send(OpsNoticeKind.DECLINED, task, reseller=(name, email))


class OpsTaskCommands:
    """The Updates and query ops use on a workflow that asked them for something."""

    _ops: OpsTasks

    @workflow.update(
        description="Ops did an ops task by hand at the provider: its reference there (the "
        "portal's ticket or confirmation) and a note. Refused for an unknown task or one "
        "already confirmed, declined or withdrawn."
    )
    def confirm_ops_task(self, task_id: str, reference: str, note: str | None = None) -> OpsTask:
        return self._ops.confirm(task_id, reference, note)

    @confirm_ops_task.validator
    def _confirm_allowed(self, task_id: str, reference: str, note: str | None = None) -> None:
        self._ops.check(task_id)
        OpsTasks.check_text("the reference", reference, REFERENCE_MAX, required=True)
        OpsTasks.check_text("the note", note, NOTE_MAX, required=False)

    @workflow.update(
        description="Ops could not do an ops task, or decided not to: the reason. It stays "
        "undone. Refused for a task that must be done (a paid reactivation) and for a task "
        "already answered."
    )
    def decline_ops_task(self, task_id: str, reason: str) -> OpsTask:
        return self._ops.decline(task_id, reason)

    @decline_ops_task.validator
    def _decline_allowed(self, task_id: str, reason: str) -> None:
        self._ops.check(task_id, declining=True)
        OpsTasks.check_text("the reason", reason, NOTE_MAX, required=True)

    @workflow.query(description="The workflow's ops tasks: open, and answered.")
    def ops_tasks(self) -> list[OpsTask]:
        return list(self._ops.tasks.values())
