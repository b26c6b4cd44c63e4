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
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )
