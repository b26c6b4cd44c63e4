"""WORKFLOW_SANDBOX: the production worker runs workflow code without the SDK's sandbox unless
it is set; the tests and replays always run the strict one (temporalutil/sandbox.py)."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from csp_core.settings import Settings
from tests.support.broken_workflow import ReadsTheWallClock
from tests.support.workflow_tasks import first_outcome


def test_the_sandbox_is_off_unless_workflow_sandbox_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WORKFLOW_SANDBOX", raising=False)
    assert Settings(_env_file=None).workflow_sandbox is False
    monkeypatch.setenv("WORKFLOW_SANDBOX", "true")
    assert Settings(_env_file=None).workflow_sandbox is True


@pytest.mark.asyncio(loop_scope="session")
async def test_the_strict_sandbox_refuses_the_wall_clock_in_workflow_code(
    ts_env: WorkflowEnvironment,
) -> None:
    result, failure = await first_outcome(ts_env, ReadsTheWallClock, strict=True)
    assert result is None
    assert "datetime.datetime.now" in failure  # RestrictedWorkflowAccessError names the call


@pytest.mark.asyncio(loop_scope="session")
async def test_without_the_sandbox_the_same_code_runs(ts_env: WorkflowEnvironment) -> None:
    """What the strict test runs exist to catch: production would not refuse it."""
    result, _ = await first_outcome(ts_env, ReadsTheWallClock, strict=False)
    assert result is not None
