"""Run one workflow on a worker of its own until its first task fails or it completes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from worker import workflow_runner


async def first_outcome(
    env: WorkflowEnvironment, workflow: type, *, strict: bool
) -> tuple[Any | None, str]:
    """The workflow's result (None if a task failed; the workflow is then terminated) and the
    failed task's message, with the strict sandbox or, as production runs it, none."""
    task_queue = f"tasks-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[workflow],
        workflow_runner=workflow_runner(strict=strict),
    ):
        handle = await env.client.start_workflow(
            workflow.run,  # type: ignore[attr-defined]
            id=f"{workflow.__name__}-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        for _ in range(200):
            for event in (await handle.fetch_history()).events:
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    await handle.terminate("test finished")
                    return None, event.workflow_task_failed_event_attributes.failure.message
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                    return await handle.result(), ""
            await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow.__name__} neither completed nor failed a task")
