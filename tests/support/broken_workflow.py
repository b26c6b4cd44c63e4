"""A workflow whose task always fails: for checking how the worker reports such failures."""

from temporalio import workflow


@workflow.defn
class AlwaysFailingTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in the workflow code")  # not a Temporal failure: task retried


@workflow.defn
class ReadsTheWallClock:
    """Non-deterministic: the strict sandbox refuses it; without the sandbox it runs."""

    @workflow.run
    async def run(self) -> str:
        import datetime  # inside run: the sandbox checks calls made while the workflow runs

        return datetime.datetime.now().isoformat()
