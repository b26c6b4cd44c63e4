"""The worker's logs: a failing workflow task is reported readably, with the sandbox (where the
console renderer's traceback formatter must not be re-imported) and without (production)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from temporalutil.logging import configure_logging
from tests.support.broken_workflow import AlwaysFailingTask
from tests.support.workflow_tasks import first_outcome

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
    result, failure = await first_outcome(ts_env, AlwaysFailingTask, strict=strict)
    assert result is None and "a bug in the workflow code" in failure

    logged, stderr = worker_logging.getvalue(), capsys.readouterr().err
    assert "Failed activation on workflow AlwaysFailingTask" in logged
    assert "RuntimeError: a bug in the workflow code" in logged  # with its traceback
    assert "locals" not in logged  # frames' variables (payloads) stay out of the logs
    assert "Logging error" not in stderr  # what logging prints when a handler fails
    assert "RestrictedWorkflowAccessError" not in logged + stderr
    if logged.startswith("{"):  # LOG_JSON: one JSON object per line, for the log shipper
        assert all(json.loads(line) for line in logged.splitlines())
