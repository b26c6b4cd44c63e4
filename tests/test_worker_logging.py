"""The worker's logs: a failing workflow task is reported readably, with the sandbox (where the
console renderer's traceback formatter must not be re-imported) and without (production)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from temporalutil.logging import configure_logging
from tests.support.broken_workflow import AlwaysFailingTask
from worker import workflow_runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=[False, True], ids=["console", "json"])
def worker_logging(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The worker's logging configuration (LOG_JSON off and on), writing to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("INFO", json=request.param, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.parametrize("strict", [True, False], ids=["sandbox", "production"])
async def test_failed_workflow_task_is_logged_without_logging_errors(
    ts_env: WorkflowEnvironment,
    worker_logging: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    strict: bool,
) -> None:
    task_queue = f"logging-{uuid.uuid4()}"
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[AlwaysFailingTask],
        workflow_runner=workflow_runner(strict=strict),
    ):
        handle = await ts_env.client.start_workflow(
            AlwaysFailingTask.run, id=f"broken-{uuid.uuid4()}", task_queue=task_queue
        )
        for _ in range(200):
            events = (await handle.fetch_history()).events
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events):
                break
            await asyncio.sleep(0.05)
        await handle.terminate("test finished")

    logged, stderr = worker_logging.getvalue(), capsys.readouterr().err
    assert "Failed activation on workflow AlwaysFailingTask" in logged
    assert "RuntimeError: a bug in the workflow code" in logged  # with its traceback
    assert "locals" not in logged  # frames' variables (payloads) stay out of the logs
    assert "Logging error" not in stderr  # what logging prints when a handler fails
    assert "RestrictedWorkflowAccessError" not in logged + stderr
    if logged.startswith("{"):  # LOG_JSON: one JSON object per line, for the log shipper
        assert all(json.loads(line) for line in logged.splitlines())
