# ruff: noqa: E402  (the repo root goes on sys.path before the project imports)
"""Order throughput and latency on the local stack: `make bench` (or `python benchmarks/orders.py`).

Starts a real Temporal dev server (SQLite file with the dev stack's WAL pragmas), the Partner
Center sandbox (no provisioning delay), an SMTP sink, a SQLite registry and ONE worker process
(the real order activities), then:

1. runs N link-invite orders end to end, each with a fresh order id and its own client tenant
   (seeded in the sandbox as visible but not yet our customer), so every order is invited and
   waits at AWAITING_PARTNER_ACCEPTANCE until the driver signals `partner_accepted`;
2. against the same server, runs N bare workflows (benchmarks/baseline.py) with the same sequence
   of no-op activities and local activities as the order's history, around one signal.

The driver finds waiting workflows as ops would, with one visibility query per tick
(OrderStage='AWAITING_PARTNER_ACCEPTANCE'), and signals each once. Latency is submit → result,
with --concurrency workflows in flight (closed loop) and optionally starts paced at --rate.
Prints a table and a one-line JSON summary. Stops by itself: each workload has a time limit
(--timeout); workflows still running then are terminated and the figures cover the completed
ones. Exit code 0 ok, 1 failures or failed checks, 2 a time limit was hit.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import contextlib
import copy
import gc
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from api import orders as order_api
from benchmarks.baseline import ACTIVITY, LOCAL_ACTIVITY, WAITING_STAGE, BareWorkflow, noop
from benchmarks.stack import (
    TOKEN,
    WorkerProcess,
    answer_driver,
    dev_server_pid,
    own_cpu_seconds,
    process_cpu_seconds,
    sandbox_server,
    start_dev_server,
)
from csp_core.notifications.mailer import SmtpMailer
from csp_core.orders.models import Order, parse_order
from csp_core.providers.metered import MeteredProvider
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.registry import Registry
from csp_core.secrets import SecretVault, generate_key
from csp_core.settings import Settings
from csp_core.stages import OrderStage
from sandbox.smtp_sink import SmtpSink
from sandbox.state import FABRIKAM_TENANT, SandboxState
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from temporalutil.metrics import ProcessMetrics
from temporalutil.sandbox import workflow_runner
from worker import create_worker, wire_activities
from workflows.order import LicenseOrderWorkflow

EXAMPLE = ROOT / "examples" / "order-link-invite.json"
LOCAL_ACTIVITY_MARKER = "core_local_activity"


# ---------------------------------------------------------------------------------------------
# The worker process: production wiring (create_worker + OrderActivities) plus the bare worker.


@dataclass(frozen=True)
class WorkerConfig:
    target: str
    namespace: str
    order_queue: str
    bare_queue: str
    sandbox_url: str
    smtp_port: int
    database_url: str


async def serve_worker(config: WorkerConfig, conn: Connection) -> None:
    """The worker process (benchmarks.stack.WorkerProcess): the production worker (every activity
    class, wired as worker.py wires them; the metered provider; the SDK runtime's metrics and the
    business ones collected as in production) plus the bare worker."""
    metrics = ProcessMetrics.create(service="csp-worker", database_url=config.database_url)
    client = await Client.connect(
        config.target,
        namespace=config.namespace,
        data_converter=DATA_CONVERTER,
        runtime=metrics.runtime,
    )
    registry = await asyncio.to_thread(Registry.from_url, config.database_url)
    try:
        async with PartnerCenterClient(config.sandbox_url, SecretStr(TOKEN), timeout=30) as pc:
            activities = wire_activities(
                provider=MeteredProvider(pc, "partner_center"),
                registry=registry,
                vault=SecretVault(generate_key()),
                mailer=SmtpMailer("127.0.0.1", config.smtp_port, "licencias@bench.example.mx"),
                client=client,
                task_queue=config.order_queue,
                ops_email="ops@bench.example.mx",
            )
            bare = Worker(
                client,
                task_queue=config.bare_queue,
                workflows=[BareWorkflow],
                activities=[noop],
                workflow_runner=workflow_runner(),  # sandboxed like the order worker
                max_cached_workflows=2000,
            )
            async with create_worker(client, config.order_queue, activities), bare:
                await answer_driver(conn)
    finally:
        registry.dispose()
        metrics.close()


# ---------------------------------------------------------------------------------------------
# The sandbox, seeded with one client tenant per order (see sandbox_server's `seed`).


def seed_client_tenants(state: SandboxState, domains: list[str]) -> None:
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


async def run_phase(
    name: str,
    client: Client,
    task_queue: str,
    count: int,
    start: Callable[[int], Awaitable[WorkflowHandle]],
    proceed: Callable[[WorkflowHandle], Awaitable[None]],
    check: Callable[[Any], str | None],
    *,
    concurrency: int,
    rate: float,
    time_limit: float,
    poll_s: float,
) -> Phase:
    """Run `count` workflows, at most `concurrency` at a time (0: all at once), started at
    `rate` per second (0: as fast as allowed); stop after `time_limit` seconds."""
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


def bench_order(run: str, number: int, domain: str) -> Order:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["order_id"] = f"BENCH-{run}-{number:05d}"
    data["tenant"] = {"mode": "link", "domain": domain}
    data["customer"]["company_name"] = f"Cliente Benchmark {number} SA de CV"
    return parse_order(data)


# ---------------------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:6]
    domains = [f"bench{run}{n:05d}.onmicrosoft.com" for n in range(args.orders)]
    orders = [bench_order(run, n, domain) for n, domain in enumerate(domains)]
    order_queue, bare_queue = f"bench-orders-{run}", f"bench-bare-{run}"
    mode = f"{args.concurrency} in flight" if args.concurrency else "all at once"
    if args.rate > 0:
        mode += f", started at {args.rate:g}/s"

    with (
        tempfile.TemporaryDirectory(prefix="csp-bench-") as tmp,
        SmtpSink(outbox=Path(tmp) / "outbox", port=0) as sink,
        sandbox_server(lambda state: seed_client_tenants(state, domains)) as (
            sandbox_url,
            sandbox_state,
        ),
    ):
        database_url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        async with await start_dev_server(Path(tmp)) as env:
            client = env.client
            server_pid = dev_server_pid()
            settings = Settings(_env_file=None, task_queue=order_queue)  # type: ignore[call-arg]
            worker = WorkerProcess(
                serve_worker,
                WorkerConfig(
                    target=client.service_client.config.target_host,
                    namespace=client.namespace,
                    order_queue=order_queue,
                    bare_queue=bare_queue,
                    sandbox_url=sandbox_url,
                    smtp_port=sink.port,
                    database_url=database_url,
                ),
            )
            pacing: dict[str, Any] = dict(
                concurrency=args.concurrency,
                rate=args.rate,
                time_limit=args.timeout,
                poll_s=args.poll,
            )
            try:
                usage = await worker.start()
                registry = Registry.from_url(database_url, migrate=False)  # migrated by the worker

                async def submit(number: int) -> WorkflowHandle:
                    result = await order_api.submit_order(
                        client, registry, orders[number], settings
                    )
                    return client.get_workflow_handle_for(
                        LicenseOrderWorkflow.run, result.workflow_id, run_id=result.run_id
                    )

                async def accept(handle: WorkflowHandle) -> None:
                    await handle.signal(LicenseOrderWorkflow.partner_accepted, "benchmark")

                def order_active(status: Any) -> str | None:
                    return None if status.stage is OrderStage.ACTIVE else str(status.stage)

                async def measured(name: str, phase: Awaitable[Phase]) -> Phase:
                    """A workload's figures plus the CPU the worker and the server spent on it."""
                    nonlocal usage
                    print(f"running {args.orders} {name} ({mode})...", flush=True)
                    server_before = process_cpu_seconds(server_pid)
                    done = await phase
                    server_after = process_cpu_seconds(server_pid)
                    now = await worker.usage()
                    done.worker_cpu_s, usage = now["cpu_s"] - usage["cpu_s"], now
                    if server_before is not None and server_after is not None:
                        done.server_cpu_s = server_after - server_before
                    if done.first_done is not None:
                        done.history_events = len((await done.first_done.fetch_history()).events)
                    return done

                order_phase = await measured(
                    "link-invite orders",
                    run_phase(
                        "order (link-invite)",
                        client,
                        order_queue,
                        args.orders,
                        submit,
                        accept,
                        order_active,
                        **pacing,
                    ),
                )
                if order_phase.first_done is None:
                    print("no order completed:", *order_phase.failures[:10], sep="\n  ")
                    return 1
                # The bare workflow repeats the steps of a completed order, in its order.
                history = await order_phase.first_done.fetch_history()
                before, after = step_plan(list(history.events))
                steps = len(before) + len(after)
                activities = sum(kind == ACTIVITY for kind in before + after)

                async def start_bare(number: int) -> WorkflowHandle:
                    return await client.start_workflow(
                        BareWorkflow.run,
                        args=[before, after],
                        id=f"bench-bare-{run}-{number:05d}",
                        task_queue=bare_queue,
                    )

                async def release(handle: WorkflowHandle) -> None:
                    await handle.signal(BareWorkflow.proceed)

                def all_steps(result: Any) -> str | None:
                    return None if result == steps else f"ran {result} of {steps} steps"

                bare_phase = await measured(
                    f"bare workflows ({activities} no-op activities + {steps - activities} "
                    "local activities + 1 signal)",
                    run_phase(
                        f"bare ({activities} act + {steps - activities} LA)",
                        client,
                        bare_queue,
                        args.orders,
                        start_bare,
                        release,
                        all_steps,
                        **pacing,
                    ),
                )
            finally:
                final = await worker.stop()

        problems = verify(order_phase, orders, database_url, sandbox_state, sink)
        peak_rss = (final or usage)["maxrss_mib"]
        report(args, mode, order_phase, bare_phase, peak_rss, problems)
        if problems or order_phase.failures or bare_phase.failures:
            return 1
        return 2 if order_phase.timed_out or bare_phase.timed_out else 0


def verify(
    phase: Phase, orders: list[Order], database_url: str, state: SandboxState, sink: SmtpSink
) -> list[str]:
    """What a user would check after the run: every completed order left its traces."""
    completed = set(phase.completed_ids)
    domains = {order.domain for order in orders if order.workflow_id in completed}
    registry = Registry.from_url(database_url, migrate=False)
    try:
        licensed = {row.domain for row in registry.list_licenses() if row.status == "active"}
    finally:
        registry.dispose()
    mailed: dict[str, set[str]] = {}
    for message in sink.messages():
        key = str(message.get("X-CSP-Key", ""))  # order-<order id>:<kind>
        mailed.setdefault(key.split(":", 1)[0], set()).add(str(message["X-CSP-Kind"]))
    problems = []
    if missing := domains - licensed:
        problems.append(f"{len(missing)} completed order(s) without active licenses")
    if state.stats()["orders_created"] < len(completed):
        problems.append("fewer provider orders than completed orders")
    unmailed = [
        wf for wf in completed if mailed.get(wf, set()) != {"partner_invitation", "order_active"}
    ]
    if unmailed:
        problems.append(f"{len(unmailed)} completed order(s) without invitation + active e-mails")
    return problems


def _ms(value: float | None) -> str:
    return f"{value * 1000:.0f}" if value is not None else "-"


def _per_wf_ms(total_s: float | None, phase: Phase) -> float | None:
    if total_s is None or not phase.completed:
        return None
    return total_s * 1000 / phase.completed


def report(
    args: argparse.Namespace,
    mode: str,
    order: Phase,
    bare: Phase,
    peak_rss_mib: float,
    problems: list[str],
) -> None:
    header = (
        f"{'workload':<22} {'done':>9} {'wall s':>7} {'wf/s':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'max ms':>7} {'events':>6} {'CPU ms/wf: worker':>17} {'server':>6} {'driver':>6}"
    )
    print()
    print(
        f"csp-orchestrator benchmark: {args.orders} per workload ({mode}), dev server "
        f"SQLite + WAL, {os.cpu_count()} CPU(s), sandbox without provisioning delay, "
        "acceptance by signal"
    )
    print(header)
    print("-" * len(header))
    for phase in (order, bare):
        cpu = [
            _per_wf_ms(total, phase)
            for total in (phase.worker_cpu_s, phase.server_cpu_s, phase.driver_cpu_s)
        ]
        worker_ms, server_ms, driver_ms = (f"{ms:.0f}" if ms is not None else "-" for ms in cpu)
        print(
            f"{phase.name:<22} {f'{phase.completed}/{phase.offered}':>9} {phase.wall_s:>7.1f} "
            f"{phase.throughput:>6.1f} {_ms(phase.quantile(0.5)):>7} "
            f"{_ms(phase.quantile(0.95)):>7} "
            f"{_ms(max(phase.latencies, default=None)):>7} {phase.history_events or '-':>6} "
            f"{worker_ms:>17} {server_ms:>6} {driver_ms:>6}"
        )
    ratio = order.throughput / bare.throughput if bare.throughput else None
    p50_o, p50_b = order.quantile(0.5), bare.quantile(0.5)
    p95_o, p95_b = order.quantile(0.95), bare.quantile(0.95)
    print(
        f"order/bare: throughput {ratio:.2f}x" if ratio is not None else "order/bare: -",
        f"p50 {p50_o / p50_b:.2f}x" if p50_o and p50_b else "",
        f"p95 {p95_o / p95_b:.2f}x" if p95_o and p95_b else "",
    )
    print(f"worker peak RSS: {peak_rss_mib:.0f} MiB (one worker process, both workloads)")
    for phase in (order, bare):
        if phase.timed_out:
            print(f"{phase.name}: stopped after --timeout {args.timeout:g}s", file=sys.stderr)
        for failure in phase.failures[:5]:
            print(f"{phase.name} failure: {failure}", file=sys.stderr)
    for problem in problems:
        print(f"check failed: {problem}", file=sys.stderr)

    def figures(phase: Phase) -> dict[str, Any]:
        return {
            "completed": phase.completed,
            "wf_per_s": round(phase.throughput, 2),
            "p50_ms": round(phase.quantile(0.5) * 1000) if phase.latencies else None,
            "p95_ms": round(phase.quantile(0.95) * 1000) if phase.latencies else None,
            "history_events": phase.history_events,
            "worker_cpu_ms_per_wf": _round(_per_wf_ms(phase.worker_cpu_s, phase)),
            "server_cpu_ms_per_wf": _round(_per_wf_ms(phase.server_cpu_s, phase)),
            "driver_cpu_ms_per_wf": _round(_per_wf_ms(phase.driver_cpu_s, phase)),
        }

    summary = {
        "orders": args.orders,
        "mode": mode,
        "order": figures(order),
        "bare": figures(bare),
        "throughput_ratio_order_over_bare": round(ratio, 3) if ratio is not None else None,
        "worker_peak_rss_mib": round(peak_rss_mib),
        "checks_ok": not problems,
    }
    print(json.dumps(summary, separators=(",", ":")))


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200, help="orders (and bare workflows)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=25,
        help="max workflows in flight (0: all at once; then all finish together, near the end)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered submits per second (0: no pacing)"
    )
    parser.add_argument("--timeout", type=float, default=50.0, help="time limit per workload, s")
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between looks for waiting workflows"
    )
    args = parser.parse_args(argv)
    if (
        args.orders < 1
        or args.concurrency < 0
        or args.rate < 0
        or min(args.timeout, args.poll) <= 0
    ):
        parser.error("--orders must be ≥ 1; --concurrency, --rate ≥ 0; --timeout, --poll > 0")
    return args


def main() -> int:
    args = parse_args()
    rc = asyncio.run(benchmark(args))
    gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit
    return rc


if __name__ == "__main__":
    sys.exit(main())
