"""WORKFLOW_SANDBOX: the production worker runs workflow code without the SDK's sandbox unless
it is set; the tests and replays always run the strict one (temporalutil/sandbox.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from csp_core.settings import Settings
from tests.support.broken_workflow import ReadsTheWallClock
from worker import workflow_runner


def test_the_sandbox_is_off_unless_workflow_sandbox_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WORKFLOW_SANDBOX", raising=False)
    assert Settings(_env_file=None).workflow_sandbox is False
    monkeypatch.setenv("WORKFLOW_SANDBOX", "true")
    assert Settings(_env_file=None).workflow_sandbox is True


async def _run(env: WorkflowEnvironment, *, strict: bool) -> tuple[str | None, str]:
    """The workflow's result (None if its task failed) and the task failure's message."""
    task_queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[ReadsTheWallClock],
        workflow_runner=workflow_runner(strict=strict),
    ):
        handle = await env.client.start_workflow(
            ReadsTheWallClock.run, id=f"clock-{uuid.uuid4()}", task_queue=task_queue
        )
        for _ in range(200):
            history = (await handle.fetch_history()).events
            for event in history:
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    await handle.terminate("test finished")
                    return None, event.workflow_task_failed_event_attributes.failure.message
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                    return await handle.result(), ""
            await asyncio.sleep(0.05)
    raise AssertionError("the workflow neither completed nor failed a task")


@pytest.mark.asyncio(loop_scope="session")
async def test_the_strict_sandbox_refuses_the_wall_clock_in_workflow_code(
    ts_env: WorkflowEnvironment,
) -> None:
    result, failure = await _run(ts_env, strict=True)
    assert result is None
    assert "datetime.datetime.now" in failure  # RestrictedWorkflowAccessError names the call


@pytest.mark.asyncio(loop_scope="session")
async def test_without_the_sandbox_the_same_code_runs(ts_env: WorkflowEnvironment) -> None:
    """What the strict test runs exist to catch: production would not refuse it."""
    result, _ = await _run(ts_env, strict=False)
    assert result is not None
