"""A workflow whose task always fails: for checking how the worker reports such failures."""

from temporalio import workflow


@workflow.defn
class AlwaysFailingTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in the workflow code")  # not a Temporal failure: task retried
