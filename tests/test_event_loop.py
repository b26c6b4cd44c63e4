"""The worker's event loop (temporalutil/event_loop.py, setting EVENT_LOOP): uvloop by default,
asyncio's own on request; anything else is refused before the worker starts. The worker
process the metrics and PostgreSQL tests start (`python worker.py`) runs on the default."""

from __future__ import annotations

import asyncio

import pydantic
import pytest
import uvloop

from csp_core.settings import Settings
from temporalutil import event_loop


async def loop_in_use() -> asyncio.AbstractEventLoop:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_the_worker_runs_on_uvloop_by_default() -> None:
    assert Settings().event_loop == "uvloop"
    assert isinstance(event_loop.run(loop_in_use()), uvloop.Loop)


def test_event_loop_asyncio_runs_the_standard_loop() -> None:
    loop = event_loop.run(loop_in_use(), "asyncio")

    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_an_unknown_event_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "trio")

    with pytest.raises(pydantic.ValidationError) as refused:
        Settings()

    assert refused.value.errors()[0]["loc"] == ("event_loop",)
    assert "'uvloop' or 'asyncio'" in refused.value.errors()[0]["msg"]
