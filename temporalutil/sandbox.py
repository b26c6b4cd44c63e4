"""Workflow sandbox configuration.

Our domain modules are pure (pydantic only) and passed through so they load once; structlog
is passed through so workflow code can log (replay-safe, see logging.py).
"""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = (
    "csp_core",
    "temporalutil",
    "activities",
    "structlog",
    # pydantic EmailStr validates through these, lazily: load them once, outside.
    "email_validator",
    "idna",
    "dns",
    # The renewal workflow's own module too (its helpers in workflows/ already are, imported
    # passed through): the sandbox would otherwise execute it again, class definition and
    # @workflow.defn checks included, for every renewal it starts (a cycle starts thousands),
    # and keep that copy per cached workflow. It holds constants only; its determinism is
    # what the replay tests (tests/test_replay.py) check.
    "workflows.renewal",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )
