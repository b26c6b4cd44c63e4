# ruff: noqa: E402  (the repo root goes on sys.path before the project imports)
"""The monthly renewal cycle on the local stack: `make bench-renewals` (or
`python benchmarks/renewals.py [--charges 10000]`).

Starts the local stack of benchmarks/stack.py (a real Temporal dev server, the Partner Center
sandbox, an SMTP sink, a SQLite registry and ONE worker process with the production worker
wiring), seeds the registry with --charges active monthly-billed subscriptions (one order and
tenant per 10 subscriptions, activated two months before the period), then:

1. bare: from the driver's client, starts --bare trivial workflows (benchmarks/baseline.py's
   BareWorkflow with no steps: one search-attribute upsert, then it waits for a signal) with
   the cycle's start concurrency (activities/renewal.py START_CONCURRENCY): the start rate of
   this server, this run;
2. once the worker is idle again, starts RenewalCycleWorkflow for next month's period (as
   `csp renewals run` does, api/renewals.py run_period) and times it until its result: every
   charge recorded and one RenewalPaymentWorkflow started per charge. The visibility count of
   RenewalPaymentWorkflow for the period must equal --charges. Each payment workflow begins
   RENEWAL_OPENING_DELAY_SECONDS (300) after its start, as in production, e-mails its opening
   notice to the SMTP sink and then waits on its ladder's timers (days away); the benchmark
   also times until every notice is in the sink and the worker is idle.

Prints a table, issue 11's three goals beside their figures, and as its LAST line one JSON
object (benchmarks/all.py, `make bench`, reads it): `renewal_start_ratio` (renewal over bare
starts per second), `worker_cpu_ms_per_renewal` (worker CPU, cycle start → worker idle, per
renewal), `worker_peak_rss_mib_renewals`, `events_per_renewal` (history length of 20 sampled
renewals, waiting), `server_cpu_ms_per_renewal`, then the time to start every renewal workflow, the
cycle's pages and runs, the notices e-mailed and the CPU seconds of the dev server, the worker
and this process (the driver, which also runs the sandbox and the SMTP sink). The worker is
the production one: worker.wire_activities, the provider metered, the SDK's and our metrics
on, the sticky cache bound worker.MAX_CACHED_WORKFLOWS (the bare worker too), bytecode
compiled as in the image. Everything lives in a temporary
directory and stops with the benchmark (the dev server with it, so nothing keeps running).
Stops by itself after --timeout seconds, and at once if a workflow module changes on disk (the
worker's sandbox would run a mix of versions). Exit code 0 ok, 1 failed checks, 2 time limit
hit, 130 interrupted (Ctrl-C or SIGTERM, cleaning up as it goes).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import gc
import hashlib
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.renewal import START_CONCURRENCY
from api.renewals import run_period
from benchmarks.baseline import BareWorkflow, noop
from benchmarks.stack import (
    TOKEN,
    WorkerProcess,
    answer_driver,
    dev_server_pid,
    own_cpu_seconds,
    process_cpu_seconds,
    process_peak_rss_mib,
    sandbox_server,
    start_dev_server,
)
from csp_core.notifications.mailer import SmtpMailer
from csp_core.providers.metered import MeteredProvider
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.registry import Registry
from csp_core.registry.tables import Order, RenewalCharge, Subscription, Tenant
from csp_core.renewals.billing import next_period, period_of, period_start
from csp_core.renewals.values import CycleResult
from csp_core.secrets import SecretVault, generate_key
from csp_core.settings import Settings
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from temporalutil.metrics import ProcessMetrics
from temporalutil.sandbox import workflow_runner
from worker import MAX_CACHED_WORKFLOWS, create_worker, wire_activities

SUBSCRIPTIONS_PER_TENANT = 10
OPS_EMAIL = "ops@bench.example.mx"
NOTICE_FILES = "-renewal_notice-"  # the sink names files <time>-<X-CSP-Kind>-<digest>.eml
IDLE_CPU_S = 0.05  # worker CPU over one second below which it counts as idle
PROGRESS_S = 30.0  # seconds between progress lines while the renewals run
# The worker's sandbox re-imports the workflow modules from disk for each new workflow (the rest
# is passed through, loaded once at start): an edit during a run would mix code versions (new
# workflow code calling the old activities), so the run stops if one changes.
SOURCES = ["workflows", "benchmarks/baseline.py"]
T = TypeVar("T")
# Issue 11's goals for 10,000 charges, printed beside the figures.
RATIO_GOAL, CPU_MS_GOAL, RSS_MIB_GOAL = 0.8, 10, 400


class TimeLimit(Exception):
    """--timeout was reached."""


# ---------------------------------------------------------------------------------------------
# The worker process: production wiring (create_worker, both activity classes) plus the bare one.


@dataclass(frozen=True)
class WorkerConfig:
    target: str
    namespace: str
    task_queue: str
    bare_queue: str
    sandbox_url: str
    smtp_port: int
    database_url: str


async def serve_worker(config: WorkerConfig, conn: Connection) -> None:
    """The worker process (benchmarks.stack.WorkerProcess), wired like worker.run_worker: the
    same activities (worker.wire_activities), the provider metered and the SDK's and our
    metrics on (one Prometheus registry, not served: a scrape costs nothing between scrapes)."""
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
                task_queue=config.task_queue,
                ops_email=OPS_EMAIL,
            )
            bare = Worker(
                client,
                task_queue=config.bare_queue,
                workflows=[BareWorkflow],
                activities=[noop],
                workflow_runner=workflow_runner(),  # run as the production worker runs them
                max_cached_workflows=MAX_CACHED_WORKFLOWS,  # and its cache bound
            )
            async with create_worker(client, config.task_queue, activities), bare:
                await answer_driver(conn)
    finally:
        registry.dispose()
        metrics.close()


# ---------------------------------------------------------------------------------------------
# Seeding the registry (not measured).


def seed_registry(database_url: str, charges: int, period: str, timezone: str) -> None:
    """`charges` active monthly subscriptions, activated two months before `period` (so each
    owes the period's charge), with one order and tenant per SUBSCRIPTIONS_PER_TENANT."""
    now = datetime.now(UTC)
    activated_at = period_start(period, timezone) - timedelta(days=55)
    tenants: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    for number in range(charges):
        group = number // SUBSCRIPTIONS_PER_TENANT
        domain = f"benchrenew{group:05d}.onmicrosoft.com"
        order_id = f"BENCH-R-{group:05d}"
        reseller = group % 50
        if number % SUBSCRIPTIONS_PER_TENANT == 0:
            tenants.append(
                dict(
                    domain=domain,
                    tenant_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)),
                    company_name=f"Cliente Renovación {group} SA de CV",
                    reseller_id=f"RES-{reseller:03d}",
                    origin="linked",
                    created_at=activated_at,
                )
            )
            orders.append(
                dict(
                    order_id=order_id,
                    fingerprint=hashlib.sha256(order_id.encode()).hexdigest(),
                    reseller_id=f"RES-{reseller:03d}",
                    reseller_name=f"Distribuidor {reseller}",
                    reseller_email=f"cobranza{reseller}@reseller.bench.example.mx",
                    domain=domain,
                    tenant_mode="link",
                    stage="ACTIVE",
                    stage_detail=None,
                    provider_order_id=str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)),
                    created_at=activated_at,
                    updated_at=activated_at,
                )
            )
        subscriptions.append(
            dict(
                subscription_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-sub:{number}")),
                tenant_domain=domain,
                order_id=order_id,
                sku="CFQ7TTC0LH18:0001",
                product_name="Microsoft 365 Business Basic",
                quantity=1 + number % 50,
                term="P1M",
                billing_cycle="monthly",
                unit_price=Decimal("126.00"),
                currency="MXN",
                status="active",
                activated_at=activated_at,
                created_at=activated_at,
                updated_at=now,
            )
        )
    registry = Registry.from_url(database_url)  # creates the schema (migrations)
    try:
        with Session(registry.engine) as session, session.begin():
            session.execute(insert(Tenant), tenants)
            session.execute(insert(Order), orders)
            session.execute(insert(Subscription), subscriptions)
    finally:
        registry.dispose()


def source_digests() -> dict[str, str]:
    digests = {}
    for name in SOURCES:
        path = ROOT / name
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            digests[str(file.relative_to(ROOT))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def changed_sources(before: dict[str, str]) -> list[str]:
    after = source_digests()
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


async def unless_sources_change(work: Awaitable[None], sources: dict[str, str]) -> list[str]:
    """Run `work`, but stop it as soon as a watched source file changes (returns which)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=5.0)
        if done:
            task.result()  # raises what the work raised (TimeLimit)
            return []
        if changed := await asyncio.to_thread(changed_sources, sources):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return changed


# ---------------------------------------------------------------------------------------------
# Figures.


@dataclass
class Cpu:
    """CPU seconds spent over a workload by each process."""

    worker: float | None = None
    server: float | None = None
    driver: float | None = None


@dataclass
class Figures:
    charges: int
    period: str
    bare_offered: int
    bare_started: int = 0
    bare_s: float | None = None  # first start sent → last start answered
    bare_quiet_s: float | None = None  # first start sent → worker idle again
    bare_cpu: Cpu = field(default_factory=Cpu)  # first start sent → worker idle again
    cycle_s: float | None = None  # cycle started → its result (every renewal started)
    result: CycleResult | None = None
    visibility_count: int | None = None
    charges_recorded: int | None = None  # the period's rows in renewal_charges, at the end
    prepare_s: float | None = None  # prepare_charges, scheduled → completed (server clock)
    fanout_s: float | None = None  # first page scheduled → last page completed (server clock)
    pages_running_s: float | None = None  # sum of the page activities' run times
    longest_wait_s: float | None = None  # the longest wait of the fan-out on its task queue
    pages: int | None = None
    runs: int | None = None
    notices: int = 0
    notices_s: float | None = None  # cycle started → every notice in the sink
    quiet_s: float | None = None  # cycle started → worker idle again
    cycle_cpu: Cpu = field(default_factory=Cpu)  # cycle started → cycle result
    renewal_cpu: Cpu = field(default_factory=Cpu)  # cycle started → worker idle again
    events_per_renewal: float | None = None  # mean history length of sampled renewals, idle
    worker_rss_ready_mib: float | None = None
    worker_rss_after_bare_mib: float | None = None
    worker_peak_rss_mib: float | None = None
    server_peak_rss_mib: float | None = None
    timed_out: str | None = None  # the step the time limit interrupted
    problems: list[str] = field(default_factory=list)

    @property
    def renewals_started(self) -> int | None:
        return self.result.renewals_started if self.result else None

    @property
    def bare_rate(self) -> float | None:
        return self.bare_started / self.bare_s if self.bare_s else None

    @property
    def renewal_rate(self) -> float | None:
        started = self.renewals_started
        return started / self.cycle_s if started is not None and self.cycle_s else None

    @property
    def fanout_rate(self) -> float | None:
        started = self.renewals_started
        return started / self.fanout_s if started is not None and self.fanout_s else None


class Meter:
    """Reads the CPU seconds of the worker, the dev server and this process."""

    def __init__(self, worker: WorkerProcess, server_pid: int | None) -> None:
        self.worker = worker
        self.server_pid = server_pid

    async def read(self) -> Cpu:
        return Cpu(
            worker=(await self.worker.usage())["cpu_s"],
            server=process_cpu_seconds(self.server_pid),
            driver=own_cpu_seconds(),
        )

    async def since(self, before: Cpu) -> Cpu:
        now = await self.read()

        def delta(a: float | None, b: float | None) -> float | None:
            return a - b if a is not None and b is not None else None

        return Cpu(
            worker=delta(now.worker, before.worker),
            server=delta(now.server, before.server),
            driver=delta(now.driver, before.driver),
        )


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    async def run(self, step: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(step, self.left())
        except TimeoutError:
            raise TimeLimit from None


# ---------------------------------------------------------------------------------------------
# The workloads.


async def start_bare(client: Client, queue: str, run: str, figures: Figures) -> None:
    """Start the bare workflows, START_CONCURRENCY at a time, as the cycle's fan-out does."""
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def one(number: int) -> None:
        async with gate:
            await client.start_workflow(
                BareWorkflow.run,
                args=[[], []],
                id=f"bench-bare-{run}-{number:06d}",
                task_queue=queue,
            )
            figures.bare_started += 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(one(n) for n in range(figures.bare_offered)))
    finally:
        figures.bare_s = time.perf_counter() - began


async def worker_idle(meter: Meter) -> None:
    """Until the worker has spent under IDLE_CPU_S of CPU in a second (its backlog is done)."""
    last = (await meter.worker.usage())["cpu_s"]
    while True:
        await asyncio.sleep(1.0)
        now = (await meter.worker.usage())["cpu_s"]
        if now - last < IDLE_CPU_S:
            return
        last = now


def count_notices(outbox: Path) -> int:
    try:
        with os.scandir(outbox) as entries:
            return sum(
                1 for entry in entries if entry.name.endswith(".eml") and NOTICE_FILES in entry.name
            )
    except FileNotFoundError:
        return 0


async def all_notices(outbox: Path, expected: int, began: float, figures: Figures) -> None:
    while True:
        figures.notices = await asyncio.to_thread(count_notices, outbox)
        if figures.notices >= expected:
            figures.notices_s = time.perf_counter() - began
            return
        await asyncio.sleep(0.25)


async def progress(client: Client, meter: Meter, began: float, figures: Figures) -> None:
    """A line every PROGRESS_S seconds while the renewals run (a 10,000 run takes minutes)."""
    last = (await meter.worker.usage())["cpu_s"], time.perf_counter()
    while True:
        await asyncio.sleep(PROGRESS_S)
        started = await visibility_count(client, figures.period, None)
        cpu, now = (await meter.worker.usage())["cpu_s"], time.perf_counter()
        print(
            f"  {now - began:5.0f}s: {started} renewal workflows started, {figures.notices} "
            f"notices e-mailed, worker CPU {100 * (cpu - last[0]) / (now - last[1]):.0f}%",
            flush=True,
        )
        last = cpu, now


async def visibility_count(client: Client, period: str, expected: int | None) -> int:
    """The visibility count of the period's payment workflows, given ~10 s to reach
    `expected` (visibility is eventually consistent); None: one look."""
    query = f"WorkflowType='RenewalPaymentWorkflow' AND {sa.BILLING_PERIOD.name}='{period}'"
    count = 0
    for _ in range(40 if expected is not None else 1):
        count = (await client.count_workflows(query)).count
        if count == expected:
            break
        await asyncio.sleep(0.25)
    return count


async def events_per_renewal(client: Client, period: str, sample: int = 20) -> float | None:
    """The mean history length of `sample` of the period's payment workflows, all waiting
    (notice sent, next step days away): what each renewal cost the server so far."""
    query = f"WorkflowType='RenewalPaymentWorkflow' AND {sa.BILLING_PERIOD.name}='{period}'"
    lengths = []
    async for execution in client.list_workflows(query, limit=sample):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        lengths.append(len((await handle.fetch_history()).events))
    return sum(lengths) / len(lengths) if lengths else None


def charges_recorded(database_url: str, period: str) -> int:
    registry = Registry.from_url(database_url, migrate=False)
    try:
        with Session(registry.engine) as session:
            query = select(func.count()).where(RenewalCharge.period == period)
            return session.scalar(query) or 0
    finally:
        registry.dispose()


async def cycle_history(client: Client, workflow_id: str, run_id: str, figures: Figures) -> None:
    """Pages, runs (continue-as-new) and the server-clock timing of the cycle's activities:
    each one's (scheduled, started, completed) instants."""
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    spans: dict[str, list[tuple[float, float, float]]] = {}
    runs = 0
    next_run: str | None = run_id
    while next_run:
        runs += 1
        history = await client.get_workflow_handle(workflow_id, run_id=next_run).fetch_history()
        next_run = None
        for event in history.events:
            at = event.event_time.ToMicroseconds() / 1e6
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = (name, at)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[event.activity_task_started_event_attributes.scheduled_event_id] = at
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = event.activity_task_completed_event_attributes
                name, queued = scheduled.pop(attrs.scheduled_event_id)
                began = started.pop(attrs.scheduled_event_id, queued)
                spans.setdefault(name, []).append((queued, began, at))
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                attrs = event.workflow_execution_continued_as_new_event_attributes
                next_run = attrs.new_execution_run_id
        scheduled.clear()  # event ids restart in each run
        started.clear()
    figures.runs = runs
    prepare = spans.get("prepare_period_charges", []) + spans.get("prepare_charges", [])
    pages = spans.get("start_renewals_page", [])
    figures.pages = len(pages)
    if prepare:
        figures.prepare_s = sum(end - queued for queued, _, end in prepare)
    if pages:
        figures.fanout_s = pages[-1][2] - pages[0][0]
        # The rest of the fan-out is waiting: for a worker to take each page's activity task,
        # and between pages for the cycle's own workflow task (continue-as-new included).
        figures.pages_running_s = sum(end - began for _, began, end in pages)
        waits = [began - queued for queued, began, _ in pages]
        waits += [nxt[0] - prev[2] for prev, nxt in zip(pages, pages[1:], strict=False)]
        figures.longest_wait_s = max(waits)


async def benchmark(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:6]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, task_queue=f"bench-renewals-{run}", ops_email=OPS_EMAIL
    )
    period = next_period(period_of(datetime.now(UTC), settings.business_timezone))
    figures = Figures(charges=args.charges, period=period, bare_offered=args.bare)
    deadline = Deadline(args.timeout)
    sources = source_digests()
    # SIGTERM stops the run like Ctrl-C: the worker, the dev server and the temporary
    # directory are cleaned up on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    with (
        tempfile.TemporaryDirectory(prefix="csp-bench-renewals-") as tmp,
        SmtpSink(outbox=Path(tmp) / "outbox", port=0) as sink,
        sandbox_server() as (sandbox_url, _),
    ):
        database_url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        print(f"seeding {args.charges} subscriptions owing period {period}...", flush=True)
        await asyncio.to_thread(
            seed_registry, database_url, args.charges, period, settings.business_timezone
        )
        async with await start_dev_server(Path(tmp)) as env:
            client = env.client
            server_pid = dev_server_pid()
            bare_queue = f"bench-bare-{run}"
            worker = WorkerProcess(
                serve_worker,
                WorkerConfig(
                    target=client.service_client.config.target_host,
                    namespace=client.namespace,
                    task_queue=settings.task_queue,
                    bare_queue=bare_queue,
                    sandbox_url=sandbox_url,
                    smtp_port=sink.port,
                    database_url=database_url,
                ),
            )
            try:
                figures.worker_rss_ready_mib = (await worker.start())["maxrss_mib"]
                meter = Meter(worker, server_pid)
                work = measure(
                    args, client, meter, deadline, run, bare_queue, settings, sink, figures
                )
                if changed := await unless_sources_change(work, sources):
                    figures.problems.append(
                        "stopped: the workflow code changed on disk during the run (the "
                        "worker's sandbox would mix versions): " + ", ".join(changed)
                    )
            except TimeLimit:
                pass
            finally:
                figures.server_peak_rss_mib = process_peak_rss_mib(server_pid)
                final = await worker.stop()
                if final is not None:
                    figures.worker_peak_rss_mib = final["maxrss_mib"]
        figures.notices = count_notices(sink.outbox)
        figures.charges_recorded = charges_recorded(database_url, period)

    check(figures)
    report(args, figures)
    if figures.problems:
        return 1
    return 2 if figures.timed_out else 0


async def measure(
    args: argparse.Namespace,
    client: Client,
    meter: Meter,
    deadline: Deadline,
    run: str,
    bare_queue: str,
    settings: Settings,
    sink: SmtpSink,
    figures: Figures,
) -> None:
    """The two workloads, one after the other; raises TimeLimit past --timeout (with
    figures.timed_out naming the step)."""

    async def step(name: str, work: Awaitable[T]) -> T:
        try:
            return await deadline.run(work)
        except TimeLimit:
            figures.timed_out = name
            raise

    # 1. The bare start rate of this server.
    print(
        f"starting {args.bare} bare workflows, {START_CONCURRENCY} at a time...",
        flush=True,
    )
    before = await meter.read()
    began = time.perf_counter()
    await step("bare starts", start_bare(client, bare_queue, run, figures))
    await step("worker idle after the bare starts", worker_idle(meter))
    figures.bare_quiet_s = time.perf_counter() - began
    figures.bare_cpu = await meter.since(before)
    figures.worker_rss_after_bare_mib = (await meter.worker.usage())["maxrss_mib"]

    # 2. The renewal cycle.
    print(f"running the renewal cycle of {period_label(figures)}...", flush=True)
    before = await meter.read()
    began = time.perf_counter()
    handle = await run_period(client, figures.period, settings)
    notices = asyncio.create_task(all_notices(sink.outbox, args.charges, began, figures))
    ticker = asyncio.create_task(progress(client, meter, began, figures))
    try:
        figures.result = await step("renewal cycle", handle.result())
        figures.cycle_s = time.perf_counter() - began
        figures.cycle_cpu = await meter.since(before)
        figures.visibility_count = await visibility_count(client, figures.period, args.charges)
        await cycle_history(client, handle.id, handle.first_execution_run_id or "", figures)
        print(
            f"  {figures.renewals_started} renewal workflows started in {figures.cycle_s:.1f}s; "
            "waiting for their notices...",
            flush=True,
        )
        await step("renewal notices", notices)
        await step("worker idle after the renewals", worker_idle(meter))
        figures.quiet_s = time.perf_counter() - began
        figures.renewal_cpu = await meter.since(before)
        figures.events_per_renewal = await events_per_renewal(client, figures.period)
    finally:
        notices.cancel()
        ticker.cancel()
        await asyncio.gather(notices, ticker, return_exceptions=True)
        if figures.visibility_count is None and figures.timed_out:
            figures.visibility_count = await visibility_count(client, figures.period, None)


def period_label(figures: Figures) -> str:
    return f"{figures.period} ({figures.charges} charges)"


def check(figures: Figures) -> None:
    n = figures.charges
    problems = figures.problems
    if figures.bare_started != figures.bare_offered and not figures.timed_out:
        problems.append(f"{figures.bare_started}/{figures.bare_offered} bare workflows started")
    if figures.result is None:
        if not figures.timed_out:
            problems.append("the renewal cycle gave no result")
        return
    if figures.result.charges_prepared != n:
        problems.append(f"the cycle reports {figures.result.charges_prepared} charges, not {n}")
    if figures.charges_recorded != n:
        problems.append(f"{figures.charges_recorded} charges recorded for the period, not {n}")
    if figures.renewals_started != n:
        problems.append(f"the cycle started {figures.renewals_started} renewals, not {n}")
    if figures.visibility_count != n:
        problems.append(
            f"visibility counts {figures.visibility_count} RenewalPaymentWorkflow for "
            f"{figures.period}, not {n}"
        )
    if figures.notices != n and not figures.timed_out:
        problems.append(f"{figures.notices} renewal notices e-mailed, not {n}")


# ---------------------------------------------------------------------------------------------
# Report.


def _f(value: float | None, spec: str = ".1f") -> str:
    return format(value, spec) if value is not None else "-"


def _r(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


def _per(total_s: float | None, count: int | None) -> float | None:
    return total_s * 1000 / count if total_s is not None and count else None


def report(args: argparse.Namespace, f: Figures) -> None:
    n = f.charges
    ratio = f.renewal_rate / f.bare_rate if f.renewal_rate and f.bare_rate else None
    fanout_ratio = f.fanout_rate / f.bare_rate if f.fanout_rate and f.bare_rate else None
    print()
    print(
        f"csp-orchestrator renewal benchmark: {n} charges, period {f.period}, dev server SQLite "
        f"+ WAL, {os.cpu_count()} CPU(s), one worker process, start concurrency "
        f"{START_CONCURRENCY}"
    )
    header = (
        f"{'workload':<38} {'count':>11} {'wall s':>7} {'wf/s':>7} "
        f"{'CPU s: worker':>13} {'server':>7} {'driver':>7}"
    )
    print(header)
    print("-" * len(header))

    def row(name: str, count: str, wall: float | None, rate: float | None, cpu: Cpu) -> None:
        print(
            f"{name:<38} {count:>11} {_f(wall):>7} {_f(rate):>7} "
            f"{_f(cpu.worker):>13} {_f(cpu.server):>7} {_f(cpu.driver):>7}"
        )

    none = Cpu()
    started = f.renewals_started
    row(
        "bare starts (driver client)",
        f"{f.bare_started}/{f.bare_offered}",
        f.bare_s,
        f.bare_rate,
        none,
    )
    row("bare: first start → worker idle", "", f.bare_quiet_s, None, f.bare_cpu)
    row(
        "renewal cycle: start → all started",
        f"{started if started is not None else '-'}/{n}",
        f.cycle_s,
        f.renewal_rate,
        f.cycle_cpu,
    )
    row(
        "  prepare_charges (activity)",
        f"{_f(f.charges_recorded, 'd')}/{n}",
        f.prepare_s,
        None,
        none,
    )
    row(
        f"  fan-out ({_f(f.pages, 'd')} pages, {_f(f.runs, 'd')} runs)",
        f"{started if started is not None else '-'}",
        f.fanout_s,
        f.fanout_rate,
        none,
    )
    waiting = f.fanout_s - f.pages_running_s if f.fanout_s and f.pages_running_s else None
    row("    pages running (activity time)", "", f.pages_running_s, None, none)
    row("    cycle waiting on its task queue", "", waiting, None, none)
    row(
        "cycle start → every notice e-mailed",
        f"{f.notices}/{n}",
        f.notices_s,
        f.notices / f.notices_s if f.notices_s else None,
        none,
    )
    row("cycle start → worker idle", "", f.quiet_s, None, f.renewal_cpu)
    print(
        f"fan-out: {_f(f.pages_running_s)}s of {_f(f.fanout_s)}s running pages, the rest waiting "
        f"for its task queue (longest wait {_f(f.longest_wait_s)}s; the cycle has its own queue, "
        "the payment workflows it starts run on the main one)"
    )
    print(
        f"renewal/bare start rate: {_f(ratio, '.2f')}x (start → all started), "
        f"{_f(fanout_ratio, '.2f')}x (fan-out only)"
    )
    print(
        "CPU ms per workflow, first start → worker idle: renewal "
        + "/".join(_f(_per(v, started), ".0f") for v in asdict(f.renewal_cpu).values())
        + ", bare "
        + "/".join(_f(_per(v, f.bare_started), ".0f") for v in asdict(f.bare_cpu).values())
        + " (worker/server/driver)"
    )
    worker_ms = _per(f.renewal_cpu.worker, started)
    print("goals (issue 11):")
    print(f"  renewal/bare start rate   {_f(ratio, '.2f'):>7}x   goal >= {RATIO_GOAL}x")
    print(f"  worker CPU per renewal    {_f(worker_ms, '.1f'):>7} ms  goal <= {CPU_MS_GOAL} ms")
    print(
        f"  worker peak RSS           {_f(f.worker_peak_rss_mib, '.0f'):>7} MiB goal <= "
        f"{RSS_MIB_GOAL} MiB"
    )
    print(f"  history events per renewal, waiting (no goal) {_f(f.events_per_renewal):>7}")
    print(
        f"visibility WorkflowType='RenewalPaymentWorkflow' AND BillingPeriod='{f.period}': "
        f"{f.visibility_count if f.visibility_count is not None else '-'} (expected {n})"
    )
    print(
        f"worker peak RSS: {_f(f.worker_peak_rss_mib, '.0f')} MiB (at ready "
        f"{_f(f.worker_rss_ready_mib, '.0f')}, after the bare starts "
        f"{_f(f.worker_rss_after_bare_mib, '.0f')}); dev server peak RSS "
        f"{_f(f.server_peak_rss_mib, '.0f')} MiB"
    )
    if f.timed_out:
        print(f"stopped by --timeout {args.timeout:g}s during: {f.timed_out}", file=sys.stderr)
    for problem in f.problems:
        print(f"check failed: {problem}", file=sys.stderr)

    def cpu(c: Cpu) -> dict[str, float | None]:
        return {k: _r(v, 1) for k, v in asdict(c).items()}

    summary = {
        # The three figures issue 11 sets goals for (benchmarks/all.py reads these).
        "renewal_start_ratio": _r(ratio, 3),
        "worker_cpu_ms_per_renewal": _r(worker_ms, 1),
        "worker_peak_rss_mib_renewals": _r(f.worker_peak_rss_mib, 0),
        "events_per_renewal": _r(f.events_per_renewal, 1),
        "server_cpu_ms_per_renewal": _r(_per(f.renewal_cpu.server, started), 1),
        "worker_cpu_ms_per_bare": _r(_per(f.bare_cpu.worker, f.bare_started), 1),
        "max_cached_workflows": MAX_CACHED_WORKFLOWS,
        "charges": n,
        "period": f.period,
        "start_concurrency": START_CONCURRENCY,
        "time_to_start_all_s": _r(f.cycle_s),
        "renewals_started": started,
        "visibility_count": f.visibility_count,
        "charges_recorded": f.charges_recorded,
        "cycle_result_charges_prepared": f.result.charges_prepared if f.result else None,
        "renewal_wf_per_s": _r(f.renewal_rate),
        "fanout_wf_per_s": _r(f.fanout_rate),
        "bare_started": f.bare_started,
        "bare_wf_per_s": _r(f.bare_rate),
        "ratio_renewal_over_bare": _r(ratio, 3),
        "ratio_fanout_over_bare": _r(fanout_ratio, 3),
        "prepare_charges_s": _r(f.prepare_s),
        "fanout_s": _r(f.fanout_s),
        "fanout_pages_running_s": _r(f.pages_running_s),
        "fanout_waiting_s": _r(waiting),
        "fanout_longest_wait_s": _r(f.longest_wait_s),
        "pages": f.pages,
        "runs": f.runs,
        "notices_emailed": f.notices,
        "time_to_all_notices_s": _r(f.notices_s),
        "time_to_worker_idle_s": _r(f.quiet_s),
        "bare_to_worker_idle_s": _r(f.bare_quiet_s),
        "cpu_s_bare_to_idle": cpu(f.bare_cpu),
        "cpu_s_cycle": cpu(f.cycle_cpu),
        "cpu_s_renewals_to_idle": cpu(f.renewal_cpu),
        "worker_peak_rss_mib": _r(f.worker_peak_rss_mib, 0),
        "dev_server_peak_rss_mib": _r(f.server_peak_rss_mib, 0),
        "timed_out": f.timed_out,
        "checks_ok": not f.problems,
    }
    print(json.dumps(summary, separators=(",", ":"), ensure_ascii=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--charges", type=int, default=10_000, help="pending renewal charges (subscriptions)"
    )
    parser.add_argument(
        "--bare", type=int, default=None, help="bare workflows to start (default: --charges)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="time limit, s")
    args = parser.parse_args(argv)
    if args.bare is None:
        args.bare = args.charges
    if args.charges < 1 or args.bare < 1 or args.timeout <= 0:
        parser.error("--charges and --bare must be ≥ 1; --timeout > 0")
    return args


def main() -> int:
    args = parse_args()
    try:
        rc = asyncio.run(benchmark(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        rc = 130
    gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit
    return rc


if __name__ == "__main__":
    sys.exit(main())
