"""How workflow code runs: in the strict sandbox (tests, replays, or WORKFLOW_SANDBOX=true) or
plainly (the production worker's default).

- strict: the sandbox imports the workflow modules afresh for every workflow it runs, and
  refuses the wall clock, random and I/O in workflow code, so a non-deterministic call fails the
  test that reaches it. Our domain modules are pure (pydantic only) and passed through so they
  load once; structlog is passed through so workflow code can log (replay-safe, see logging.py).
- plain (`UnsandboxedWorkflowRunner`): the same workflow code, without the sandbox's per-workflow
  module copies and the code it compiles and runs in them at every payload the workflow sends
  (the SDK asks the sandboxed instance for each payload's serialization context): 15-20% of an
  order's worker CPU in benchmarks/orders.py (issue 11). What the sandbox would catch at run
  time, the strict runs of the whole test suite and the replay tests catch before release; ops
  who prefer the guard at run time anyway set WORKFLOW_SANDBOX=true.
"""

import compileall
import functools
import importlib.util
from pathlib import Path

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
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
WORKFLOW_MODULES = "workflows"


def workflow_runner(*, strict: bool = False) -> WorkflowRunner:
    """The strict sandbox, or (the production default) no sandbox."""
    if not strict:
        return UnsandboxedWorkflowRunner()
    compile_workflow_modules()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


@functools.cache
def compile_workflow_modules() -> None:
    """Bytecode for the workflow modules, once per process: a strict sandbox imports them for
    every workflow it runs, and without bytecode (PYTHONDONTWRITEBYTECODE on a source checkout)
    each import compiles the source again. A read-only checkout just goes without."""
    spec = importlib.util.find_spec(WORKFLOW_MODULES)
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(Path(folder), quiet=2)
