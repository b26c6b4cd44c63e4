"""`csp ops tasks` and `csp ops confirm|decline` on the REAL Temporal dev server (real clock,
SQLite visibility: the time-skipping test server has no list API), with the worker on the Ingram
adapter against the sandbox's Xvantage face; the CLI as a subprocess, as ops run it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.smtp_sink import SmtpSink
from tests.conftest import SANDBOX_TOKEN
from tests.support import devserver
from tests.support.cli import csp, stack_env
from tests.support.ingram import at_ingram
from tests.support.stack import Stack, example, running_stack

pytestmark = [pytest.mark.devserver, pytest.mark.asyncio(loop_scope="session")]

RESULT_TIMEOUT = 60.0
CONTOSO = "contosomx.onmicrosoft.com"


dev_env = devserver.dev_env  # one in-memory dev server per module


@pytest_asyncio.fixture(loop_scope="session")
async def ingram_dev(
    dev_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    async with running_stack(
        dev_env,
        sandbox=sandbox,
        sandbox_token=SANDBOX_TOKEN,
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="devserver-ops",
        ingram=True,
    ) as stack:
        yield stack


async def open_tasks(env: dict[str, str], count: int) -> list[dict[str, Any]]:
    """`csp ops tasks --json`, once it lists `count` tasks (visibility follows the workflow)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        result = await csp(env, "ops", "tasks", "--json")
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        if len(rows) == count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_ops_list_the_open_tasks_and_confirm_one_from_the_cli(ingram_dev: Stack) -> None:
    stack, env = ingram_dev, stack_env(ingram_dev)
    handle = await stack.submit(example("order-create.json"))
    assert (await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)).stage.value == "ACTIVE"
    [license_] = stack.registry.list_licenses(CONTOSO)
    sub_id = license_.subscription_id

    asked = await csp(
        env, "subscription", "seats", sub_id, "--quantity", "15", "--request-id", "r1"
    )
    assert asked.returncode == 0, asked.stderr
    assert "NOT DONE YET, pending with ops" in asked.stdout
    assert "seats       10 ×" in asked.stdout  # what holds now
    assert "Set the seats of subscription" in asked.stdout

    [task] = await open_tasks(env, 1)
    assert (task["workflow_id"], task["operation"]) == (f"subscription-{sub_id}", "change_seats")
    listed = await csp(env, "ops", "tasks")
    assert f"subscription-{sub_id} {task['task_id']}  due by" in listed.stdout
    assert f"csp ops confirm subscription-{sub_id} {task['task_id']} --reference" in listed.stdout

    unknown = await csp(
        env, "ops", "confirm", f"subscription-{sub_id}", "cancel-0000", "--reference", "R"
    )
    assert unknown.returncode == 3 and "no ops task 'cancel-0000'" in unknown.stderr
    missing = await csp(
        env, "ops", "confirm", "subscription-nope", task["task_id"], "--reference", "R"
    )
    assert missing.returncode == 4, missing.stderr

    at_ingram(stack, sub_id, quantity=15)
    confirm = ["ops", "confirm", f"subscription-{sub_id}", task["task_id"], "--reference"]
    done = await csp(env, *confirm, "IM-77")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"subscription-{sub_id} {task['task_id']}: CONFIRMED (reference IM-77)"
    )
    again = await csp(env, *confirm, "IM-78")
    assert again.returncode == 3 and "already CONFIRMED" in again.stderr and "IM-77" in again.stderr

    assert await open_tasks(env, 0) == []
    for _ in range(100):
        shown = await csp(env, "subscription", "show", sub_id, "--json")
        if json.loads(shown.stdout)["seats"] == 15:
            break
        await asyncio.sleep(0.1)
    assert json.loads(shown.stdout)["ops_tasks"] == []
    assert stack.registry.get_subscription(sub_id).quantity == 15
    assert (await csp(env, "ops", "tasks")).stdout.strip() == "no open ops tasks"
