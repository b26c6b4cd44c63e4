"""The bare baseline for benchmarks/orders.py: the order workflow's shape with nothing inside.

BareWorkflow runs the same sequence of activities and local activities as a link-invite order
(read from an order's history), each a no-op, around a wait for one signal. It marks the wait
with the same OrderStage search attribute the order sets, so the driver finds and signals both
the same way and the order/bare ratio is the cost of the order's own work.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from temporalutil import search_attributes as sa

ACTIVITY, LOCAL_ACTIVITY = "activity", "local"
WAITING_STAGE = "AWAITING_PARTNER_ACCEPTANCE"  # OrderStage.AWAITING_PARTNER_ACCEPTANCE
STEP_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_noop")
async def noop() -> None:
    """Does nothing: what is left is the orchestration cost of one activity."""


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._signalled = False

    @workflow.run
    async def run(self, before: list[str], after: list[str]) -> int:
        """Run `before` steps, wait for the signal, run `after` steps; returns the step count."""
        for kind in before:
            await self._step(kind)
        workflow.upsert_search_attributes([sa.ORDER_STAGE.value_set(WAITING_STAGE)])
        await workflow.wait_condition(lambda: self._signalled)
        for kind in after:
            await self._step(kind)
        return len(before) + len(after)

    @workflow.signal
    def proceed(self) -> None:
        self._signalled = True

    async def _step(self, kind: str) -> None:
        if kind == LOCAL_ACTIVITY:
            await workflow.execute_local_activity(noop, start_to_close_timeout=STEP_TIMEOUT)
        else:
            await workflow.execute_activity(noop, start_to_close_timeout=STEP_TIMEOUT)
