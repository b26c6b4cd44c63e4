"""The worker as production runs it: `python worker.py` in a process of its own, configured by
environment variables only, against the test stack's Temporal, sandbox, SMTP sink and database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api import orders as order_api
from csp_core.registry import Registry
from csp_core.secrets import generate_key
from csp_core.settings import Settings
from csp_core.stages import OrderStage
from sandbox.smtp_sink import SmtpSink
from tests.support.stack import OPS_EMAIL, example
from workflows.order import LicenseOrderWorkflow

ROOT = Path(__file__).resolve().parents[2]
START_PATIENCE_S = 60.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path
    metrics_url: str

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """GET /metrics over HTTP: {(sample name, labels): value}."""
        response = httpx.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


def sample(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The value of the series `name` whose labels include `labels` (summed when several)."""
    wanted = set(labels.items())
    values = [value for (n, ls), value in scraped.items() if n == name and wanted <= ls]
    return sum(values) if values else None


def _clean_environment() -> dict[str, str]:
    """This process's environment without any of the worker's own settings (a developer's
    TEMPORAL_ADDRESS or PAYLOAD_ENCRYPTION_KEYS must not leak into the test)."""
    ours = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in ours}


@contextmanager
def worker_process(settings: dict[str, str], workdir: Path) -> Iterator[WorkerProcess]:
    """Start `python worker.py` with `settings` as its environment (METRICS_ADDRESS port 0: it
    logs the port it got), wait until it serves /metrics, and stop it with SIGTERM afterwards."""
    with worker_processes(settings, [workdir]) as (worker,):
        yield worker


@contextmanager
def worker_processes(
    settings: dict[str, str], workdirs: list[Path]
) -> Iterator[list[WorkerProcess]]:
    """Several workers (replicas) started at once, each in its own directory."""
    env = {**_clean_environment(), "LOG_JSON": "true", "METRICS_ADDRESS": "127.0.0.1:0"}
    env.update(settings)
    started: list[tuple[subprocess.Popen, Path]] = []
    try:
        for workdir in workdirs:
            log_path = workdir / "worker.log"
            with open(log_path, "wb") as log:
                # cwd: its own directory, so no developer .env or .data is read.
                process = subprocess.Popen(
                    [sys.executable, str(ROOT / "worker.py")],
                    cwd=workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append((process, log_path))
        yield [
            WorkerProcess(process, log_path, _metrics_url(process, log_path))
            for process, log_path in started
        ]
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _metrics_url(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_PATIENCE_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if '"metrics_serving"' in line:
                return json.loads(line)["url"]
        if process.poll() is not None:
            raise RuntimeError(
                f"worker exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        time.sleep(0.1)
    raise RuntimeError(f"worker did not serve /metrics in {START_PATIENCE_S:.0f}s")


async def result_skipping_time(env: WorkflowEnvironment, handle: WorkflowHandle) -> Any:
    """A workflow's result, letting the time-skipping server skip time meanwhile, once its first
    task has run (tests/support/stack.py `Stack.result`, for a worker in another process)."""
    for _ in range(200):
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        if (description.raw_description.workflow_execution_info.history_length or 0) > 3:
            break
        await asyncio.sleep(0.05)
    async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
        return await handle.result()


def worker_settings(
    env: WorkflowEnvironment,
    sandbox: httpx.Client,
    sandbox_token: str,
    sink: SmtpSink,
    database_url: str,
) -> dict[str, str]:
    """The worker's whole configuration, as environment variables (as in docker-compose.yml)."""
    return {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "TASK_QUEUE": f"worker-process-{uuid.uuid4()}",
        "DATABASE_URL": database_url,
        "PROVIDER": "sandbox",
        "PROVIDER_BASE_URL": str(sandbox.base_url).rstrip("/"),
        "PROVIDER_API_KEY": sandbox_token,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "MAIL_FROM": "licencias@test.example.mx",
        "OPS_EMAIL": OPS_EMAIL,
        "SECRETS_KEY": generate_key(),
        "ACCEPTANCE_POLL_MINUTES": "360",
    }


async def run_create_order(
    env: WorkflowEnvironment, registry: Registry, worker: WorkerProcess, task_queue: str
) -> str:
    """Submit examples/order-create.json as an order system does; wait until it is final."""
    order = example("order-create.json")
    settings = Settings(task_queue=task_queue, ops_email=OPS_EMAIL)
    submitted = await order_api.submit_order(env.client, registry, order, settings)
    handle = env.client.get_workflow_handle_for(LicenseOrderWorkflow.run, submitted.workflow_id)
    result = await result_skipping_time(env, handle)
    assert result.stage is OrderStage.ACTIVE, worker.log_tail()
    return order.order_id


async def scrape_until(worker: WorkerProcess, name: str, **labels: str) -> dict:
    """Scrape until the series is there: the SDK records a completed workflow just after the
    server has it, so the client may see the result a moment earlier."""
    for _ in range(100):
        scraped = worker.scrape()
        if sample(scraped, name, **labels):
            return scraped
        await asyncio.sleep(0.1)
    return worker.scrape()
