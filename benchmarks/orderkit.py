"""What the order benchmarks (orders.py, waiting.py) share: the production worker process,
client tenants seeded in the sandbox, benchmark orders, the phase driver and the checks.

- `serve_worker`: the worker process (benchmarks.stack.WorkerProcess) wired as worker.py wires
  it, plus, when `bare_queue` is set, the bare worker (benchmarks/baseline.py);
- `seed_client_tenants`, `link_order`, `create_order`: orders that each need their own tenant;
- `run_phase`: starts N workflows (closed loop or paced), signals each one once visibility shows
  it waiting, awaits every result;
- `mailed_kinds`, `verify_orders`: what a user would check afterwards (registry, provider, SMTP
  sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from benchmarks.baseline import ACTIVITY, LOCAL_ACTIVITY, WAITING_STAGE, BareWorkflow, noop
from benchmarks.stack import TOKEN, answer_driver, own_cpu_seconds
from csp_core.notifications.mailer import SmtpMailer
from csp_core.orders.models import Order, parse_order
from csp_core.providers.metered import MeteredProvider
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.registry import Registry
from csp_core.secrets import SecretVault, generate_key
from sandbox.smtp_sink import SmtpSink
from sandbox.state import FABRIKAM_TENANT, SandboxState
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from temporalutil.metrics import ProcessMetrics
from temporalutil.sandbox import workflow_runner
from worker import MAX_CACHED_WORKFLOWS, create_worker, wire_activities

ROOT = Path(__file__).resolve().parents[1]
LINK_EXAMPLE = ROOT / "examples" / "order-link-invite.json"
CREATE_EXAMPLE = ROOT / "examples" / "order-create.json"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
# The e-mails (X-CSP-Kind) each kind of order leaves in the SMTP sink.
LINK_MAILS = frozenset({"partner_invitation", "order_active"})
CREATE_MAILS = frozenset({"order_active"})


# ---------------------------------------------------------------------------------------------
# The worker process: production wiring (create_worker + every activity class) plus the bare one.


@dataclass(frozen=True)
class WorkerConfig:
    target: str
    namespace: str
    order_queue: str
    bare_queue: str | None  # None: no bare worker
    sandbox_url: str
    smtp_port: int
    database_url: str


async def serve_worker(config: WorkerConfig, conn: Connection) -> None:
    """The worker process (benchmarks.stack.WorkerProcess): the production worker (every activity
    class, wired as worker.py wires them; the metered provider; the SDK runtime's metrics and the
    business ones collected as in production; the sticky cache bound worker.MAX_CACHED_WORKFLOWS;
    no sandbox)
    plus, if asked for, the bare worker with the same bound."""
    metrics = ProcessMetrics.create(service="csp-worker", database_url=config.database_url)
    client = await Client.connect(
        config.target,
        namespace=config.namespace,
        data_converter=DATA_CONVERTER,
        runtime=metrics.runtime,
    )
    registry = await asyncio.to_thread(Registry.from_url, config.database_url)
    try:
        async with (
            PartnerCenterClient(config.sandbox_url, SecretStr(TOKEN), timeout=30) as pc,
            contextlib.AsyncExitStack() as workers,
        ):
            activities = wire_activities(
                provider=MeteredProvider(pc, "partner_center"),
                registry=registry,
                vault=SecretVault(generate_key()),
                mailer=SmtpMailer("127.0.0.1", config.smtp_port, "licencias@bench.example.mx"),
                client=client,
                task_queue=config.order_queue,
                ops_email="ops@bench.example.mx",
            )
            await workers.enter_async_context(create_worker(client, config.order_queue, activities))
            if config.bare_queue is not None:
                bare = Worker(
                    client,
                    task_queue=config.bare_queue,
                    workflows=[BareWorkflow],
                    activities=[noop],
                    workflow_runner=workflow_runner(),  # run as the order worker runs them
                    max_cached_workflows=MAX_CACHED_WORKFLOWS,  # and its cache bound
                )
                await workers.enter_async_context(bare)
            await answer_driver(conn)
    finally:
        registry.dispose()
        metrics.close()


# ---------------------------------------------------------------------------------------------
# Orders, each with its own tenant.


def seed_client_tenants(state: SandboxState, domains: Iterable[str]) -> None:
    """Add tenants that exist at Microsoft but have not accepted us yet (like Fabrikam).

    The sandbox has no control endpoint to add such a tenant, so the benchmark, which runs the
    sandbox in-process, adds them to its world directly before serving.
    """
    with state.lock:
        template = state.world["customers"][FABRIKAM_TENANT]
        for number, domain in enumerate(domains):
            tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, domain))
            customer = copy.deepcopy(template)
            customer.update(
                id=tenant_id,
                commerceId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"commerce:{tenant_id}")),
                relationshipToPartner="none",
                allowDelegatedAccess=False,
            )
            customer["companyProfile"] = {
                "tenantId": tenant_id,
                "domain": domain,
                "companyName": f"Cliente Benchmark {number} SA de CV",
            }
            state.world["customers"][tenant_id] = customer


def link_domains(run: str, count: int) -> list[str]:
    return [f"bench{run}{n:05d}.onmicrosoft.com" for n in range(count)]


def link_order(run: str, number: int, domain: str) -> Order:
    """A link-invite order for `domain` (a tenant seeded by seed_client_tenants)."""
    data = json.loads(LINK_EXAMPLE.read_text(encoding="utf-8"))
    data["order_id"] = f"BENCH-{run}-{number:05d}"
    data["tenant"] = {"mode": "link", "domain": domain}
    data["customer"]["company_name"] = f"Cliente Benchmark {number} SA de CV"
    return parse_order(data)


def create_order(run: str, number: int) -> Order:
    """A create-mode order: a new tenant with a domain prefix no other order uses."""
    data = json.loads(CREATE_EXAMPLE.read_text(encoding="utf-8"))
    data["order_id"] = f"BENCH-{run}-NEW-{number:05d}"
    data["tenant"] = {"mode": "create", "domain_prefix": f"benchnew{run}{number:05d}"}
    data["customer"]["company_name"] = f"Cliente Nuevo Benchmark {number} SA de CV"
    return parse_order(data)


# ---------------------------------------------------------------------------------------------
# Driving a phase: start N workflows, signal each once it waits, await every result.


@dataclass
class Phase:
    name: str
    offered: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    timed_out: bool = False
    worker_cpu_s: float | None = None
    server_cpu_s: float | None = None
    driver_cpu_s: float | None = None  # this process: driver, sandbox and SMTP sink
    completed_ids: list[str] = field(default_factory=list)
    first_done: WorkflowHandle | None = None  # to read a complete history from
    history_events: int | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0

    def quantile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q * 100) - 1]

    def per_wf_ms(self, total_s: float | None) -> float | None:
        if total_s is None or not self.completed:
            return None
        return total_s * 1000 / self.completed


async def run_phase(
    name: str,
    client: Client,
    task_queue: str,
    count: int,
    start: Callable[[int], Awaitable[WorkflowHandle]],
    proceed: Callable[[WorkflowHandle], Awaitable[None]] | None,
    check: Callable[[Any], str | None],
    *,
    concurrency: int,
    rate: float,
    time_limit: float,
    poll_s: float,
) -> Phase:
    """Run `count` workflows, at most `concurrency` at a time (0: no bound), started at `rate`
    per second (0: as fast as allowed); stop after `time_limit` seconds. With `proceed`, each
    workflow is signalled through it once visibility shows it waiting; without, none waits.
    A workflow's latency runs from its start (submit) to its result."""
    phase = Phase(name, count)
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[None]] = {}
    limit = asyncio.Semaphore(concurrency or count)
    query = (
        f"TaskQueue='{task_queue}' AND ExecutionStatus='Running' "
        f"AND {sa.ORDER_STAGE.name}='{WAITING_STAGE}'"
    )
    began = time.perf_counter()

    async def find_waiting() -> None:
        """One visibility query per tick finds every workflow now waiting for its signal."""
        while True:
            if waiting:
                async for execution in client.list_workflows(query, page_size=1000):
                    future = waiting.pop(execution.id, None)
                    if future is not None and not future.done():
                        future.set_result(None)
            await asyncio.sleep(poll_s)

    async def one(number: int) -> None:
        if rate > 0:
            await asyncio.sleep(max(0.0, began + number / rate - time.perf_counter()))
        async with limit:
            submitted = time.perf_counter()
            handle = await start(number)
            if proceed is not None:
                reached = loop.create_future()
                waiting[handle.id] = reached
                await reached
                await proceed(handle)
            problem = check(await handle.result())
            if problem:
                phase.failures.append(f"{handle.id}: {problem}")
            else:
                phase.latencies.append(time.perf_counter() - submitted)
                phase.completed_ids.append(handle.id)
                phase.first_done = phase.first_done or handle

    own_cpu = own_cpu_seconds()
    finder = asyncio.create_task(find_waiting())
    tasks = [asyncio.create_task(one(number)) for number in range(count)]
    try:
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        phase.timed_out = bool(pending)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                phase.failures.append(repr(task.exception()))
    finally:
        finder.cancel()
        await asyncio.gather(finder, *tasks, return_exceptions=True)
    phase.wall_s = time.perf_counter() - began
    phase.driver_cpu_s = own_cpu_seconds() - own_cpu
    if phase.timed_out:
        # Leftovers would keep loading the server and the worker during the next workload.
        running = f"TaskQueue='{task_queue}' AND ExecutionStatus='Running'"
        async for execution in client.list_workflows(running, page_size=1000):
            with contextlib.suppress(RPCError):  # it may have completed meanwhile
                await client.get_workflow_handle(execution.id).terminate("benchmark time limit")
    return phase


def step_plan(history_events: list[Any]) -> tuple[list[str], list[str]]:
    """The order's activities and local activities, in order, before and after its signal."""
    before: list[str] = []
    after: list[str] = []
    current = before
    for event in history_events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            current = after
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            current.append(ACTIVITY)
        elif (
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ):
            current.append(LOCAL_ACTIVITY)
    return before, after


# ---------------------------------------------------------------------------------------------
# Checks: what a user would look at after the run.


def mailed_kinds(sink: SmtpSink) -> dict[str, list[str]]:
    """The e-mail kinds (X-CSP-Kind) the sink holds per order workflow id, duplicates kept.

    Whichever activity sends them, each carries X-CSP-Key `order-<order id>:<kind>...`."""
    mailed: dict[str, list[str]] = {}
    for message in sink.messages():
        key = str(message.get("X-CSP-Key", ""))
        mailed.setdefault(key.split(":", 1)[0], []).append(str(message.get("X-CSP-Kind", "")))
    return mailed


def verify_orders(
    completed: list[tuple[list[Order], list[str], frozenset[str]]],
    database_url: str,
    state: SandboxState,
    sink: SmtpSink,
) -> list[str]:
    """Every completed order (per workload: its orders, the completed workflow ids, the e-mail
    kinds it must leave, each once) left active licenses, a provider order and its e-mails."""
    registry = Registry.from_url(database_url, migrate=False)
    try:
        licensed = {row.domain for row in registry.list_licenses() if row.status == "active"}
    finally:
        registry.dispose()
    mailed = mailed_kinds(sink)
    problems = []
    total = 0
    for orders, completed_ids, mails in completed:
        done = set(completed_ids)
        total += len(done)
        domains = {order.domain for order in orders if order.workflow_id in done}
        if missing := domains - licensed:
            problems.append(f"{len(missing)} completed order(s) without active licenses")
        wrong = [wf for wf in done if sorted(mailed.get(wf, [])) != sorted(mails)]
        if wrong:
            example = f"{wrong[0]}: {sorted(mailed.get(wrong[0], []))}"
            problems.append(
                f"{len(wrong)} completed order(s) without exactly the e-mails "
                f"{sorted(mails)} (e.g. {example})"
            )
    if state.stats()["orders_created"] < total:
        problems.append("fewer provider orders than completed orders")
    return problems
