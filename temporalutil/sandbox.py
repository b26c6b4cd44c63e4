"""Workflow sandbox configuration: one runner, strict for tests, shared for production.

Our domain modules are pure (pydantic only) and passed through so they load once; structlog
is passed through so workflow code can log (replay-safe, see logging.py).

The workflow modules themselves (`workflows/`) are where the two modes differ:
- strict (`make test`, the replay tests): the sandbox imports them afresh for every workflow it
  runs, so a non-deterministic call in workflow code (the wall clock, random, I/O) fails the
  test that reaches it;
- shared (the production worker, the benchmarks): they are passed through as well, loaded once
  per process. The sandbox otherwise re-executes every workflow module, class definitions and
  `@workflow.defn` checks included, for each order, renewal and subscription workflow it starts
  or takes back after a cache eviction: 14% of an order's worker CPU, measured by
  benchmarks/orders.py (issue 11). They hold constants only; that they are deterministic is what
  the strict runs of the test suite and the replay tests check.
"""

import compileall
import functools
import importlib.util
from pathlib import Path

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


def workflow_runner(*, strict: bool = False) -> SandboxedWorkflowRunner:
    """The sandboxed runner; `strict` re-imports the workflow modules for every workflow."""
    passthrough = PASSTHROUGH if strict else (*PASSTHROUGH, WORKFLOW_MODULES)
    if strict:
        compile_workflow_modules()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough)
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
