"""Ops tasks from the client side: the open ones (Temporal visibility finds the workflows whose
`OpsAttention` holds OPS_ACTION_REQUIRED; each workflow's `ops_tasks` query says what they are),
and ops' answer to one: confirmed with the provider portal's reference, or declined with the
reason (Updates whose validators refuse an unknown or already answered task).

Plain async functions over a Temporal client, for the CLI and an HTTP API.
"""

from __future__ import annotations

import asyncio
import re

from pydantic import BaseModel, ConfigDict
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from csp_core.ops.tasks import NOTE_MAX, REFERENCE_MAX, OpsTask
from csp_core.stages import OpsAttention
from temporalutil import search_attributes as sa

# Workflow ids of this system (order-…, renewal-…-YYYY-MM, subscription-…) and task ids.
_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")
_TASK_ID = re.compile(r"^[a-z][a-z_]*-[A-Za-z0-9-]{1,64}$")
# Workflows with an open ops task (the flag is cleared when its last task is answered).
OPEN_TASKS_QUERY = (
    f"{sa.OPS_ATTENTION.name} = '{OpsAttention.OPS_ACTION_REQUIRED.value}' "
    "AND ExecutionStatus = 'Running'"
)
QUERY_CONCURRENCY = 8


class OpsInputError(ValueError):
    """Bad input, found before anything is asked: names the argument and the rule."""


class OpsTaskRefused(Exception):
    """The workflow refused the answer: the message says why."""


class OpsTaskNotFound(OpsTaskRefused):
    """No running workflow with that id."""


class OpenTasks(BaseModel):
    """The open ops tasks, soonest due first, and the workflows that could not be asked."""

    model_config = ConfigDict(frozen=True)

    tasks: list[OpsTask]
    unreadable: list[str] = []  # "<workflow id>: <why>" (no worker to answer the query...)


def check_workflow_id(value: str) -> str:
    if not _WORKFLOW_ID.match(value):
        raise OpsInputError(
            "WORKFLOW_ID: the workflow's id as `csp ops tasks` prints it, letters, digits, "
            f"'.', '_', ':' or '-' (got {value!r})"
        )
    return value


def check_task_id(value: str) -> str:
    if not _TASK_ID.match(value):
        raise OpsInputError(
            f"TASK_ID: the task's id as `csp ops tasks` prints it, e.g. suspend-2026-05 (got "
            f"{value!r})"
        )
    return value


def check_text(option: str, value: str | None, limit: int, *, required: bool) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise OpsInputError(f"{option}: required, one line of at most {limit} characters")
    if len(text) > limit or any(ord(c) < 32 for c in text):
        raise OpsInputError(f"{option}: one line of at most {limit} characters (got {value!r})")
    return text or None


async def list_open_tasks(client: Client) -> OpenTasks:
    workflow_ids = [execution.id async for execution in client.list_workflows(OPEN_TASKS_QUERY)]
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def ask(workflow_id: str) -> list[OpsTask] | str:
        async with gate:
            try:
                tasks = await client.get_workflow_handle(workflow_id).query(
                    "ops_tasks", result_type=list[OpsTask]
                )
            except RPCError as err:
                if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                    raise
                return f"{workflow_id}: {err.message}"
            return [task for task in tasks if task.is_open]

    answers = await asyncio.gather(*(ask(wid) for wid in dict.fromkeys(workflow_ids)))
    tasks = [task for answer in answers if isinstance(answer, list) for task in answer]
    return OpenTasks(
        tasks=sorted(tasks, key=lambda t: (t.deadline, t.workflow_id, t.task_id)),
        unreadable=[answer for answer in answers if isinstance(answer, str)],
    )


async def confirm_task(
    client: Client, workflow_id: str, task_id: str, reference: str, note: str | None = None
) -> OpsTask:
    """Ops did it at the provider: `reference` is the portal's ticket or confirmation."""
    reference_text = check_text("--reference", reference, REFERENCE_MAX, required=True)
    note_text = check_text("--note", note, NOTE_MAX, required=False)
    return await _answer(
        client, workflow_id, task_id, "confirm_ops_task", [task_id, reference_text, note_text]
    )


async def decline_task(client: Client, workflow_id: str, task_id: str, reason: str) -> OpsTask:
    """Ops could not do it, or decided not to: it stays undone, for the reason given."""
    reason_text = check_text("--reason", reason, NOTE_MAX, required=True)
    return await _answer(client, workflow_id, task_id, "decline_ops_task", [task_id, reason_text])


async def _answer(
    client: Client, workflow_id: str, task_id: str, update: str, args: list[object]
) -> OpsTask:
    check_workflow_id(workflow_id)
    check_task_id(task_id)
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await handle.execute_update(update, args=args, result_type=OpsTask)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise OpsTaskRefused(reason) from err
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        if err.status == RPCStatusCode.NOT_FOUND:
            raise OpsTaskNotFound(
                f"no running workflow {workflow_id} in namespace {client.namespace}: its tasks "
                "ended with it (`csp ops tasks` lists the open ones)"
            ) from err
        raise OpsTaskRefused(f"{workflow_id}: {err.message}") from err
