"""Workflows already running in production must keep replaying after every code change.

Each file under tests/histories/<release>/ is a history a released version wrote (recorded with
tests/histories/record.py). Replaying it through today's workflow code must reproduce the
same commands; a change that does not is caught here, and needs `workflow.patched`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from temporalutil.converter import DATA_CONVERTER
from worker import WORKFLOWS, workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*/*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", json.loads(path.read_text()))


def test_every_workflow_type_has_saved_histories() -> None:
    kinds = {
        load(path).events[0].workflow_execution_started_event_attributes.workflow_type.name
        for path in HISTORIES
    }
    assert kinds == {w.__name__ for w in WORKFLOWS}


@pytest.mark.parametrize("strict", [True, False], ids=["sandbox", "production"])
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_saved_history_replays_on_current_code(path: Path, strict: bool) -> None:
    history = load(path)
    assert history.events[-1].event_type  # a whole history, ending in its close event

    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(strict=strict),
    )  # in the strict sandbox, and as the production worker runs them (no sandbox)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
