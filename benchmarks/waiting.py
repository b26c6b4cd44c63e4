# ruff: noqa: E402  (the repo root goes on sys.path before the project imports)
"""Waiting costs little: N orders waiting for partner acceptance, on the local stack:
`make bench-waiting` (or `python benchmarks/waiting.py [--orders 10000]`).

Starts the local stack of benchmarks/stack.py (a real Temporal dev server, the Partner Center
sandbox, an SMTP sink, a SQLite registry and ONE worker process: the production worker of
benchmarks/orderkit.py, i.e. worker.create_worker + worker.wire_activities, the provider metered,
the SDK's and our metrics on, the sticky cache bound worker.MAX_CACHED_WORKFLOWS), seeds one
client tenant per order in the sandbox (visible at the provider, not yet our customer), then
submits --orders link-invite orders through order_api.submit_order, --concurrency at a time,
and leaves them waiting: nobody accepts. Submits go on only while fewer than --window (200)
submitted orders are not waiting yet: the steady state the goal is about. `--window 0` makes
them a burst (an end of month) instead: they outrun the worker, the server holds thousands of
orders on their way to the wait, and the worker cycles them through its sticky cache (on the
2-core box 10,000 at once collapsed to ~2-5 orders/s reaching the wait, with workflow tasks
over 5 s and timed out: ask the lead before making that the default).
Then it waits until visibility counts every order at OrderStage='AWAITING_PARTNER_ACCEPTANCE',
every invitation e-mail is in the SMTP sink and the worker is idle, and reads the worker
process's resident set from /proc.

`waiting_orders_rss_mb` is the worker's CURRENT resident set (VmRSS) with the N orders waiting,
in MB (10^6 bytes, as the goal is stated; `rss_mib` gives MiB): what holding them costs, which
is what a worker must be sized for while orders wait for days. The peak (VmHWM) also holds the
start burst's transients (workflow tasks and activities in flight, replays after cache
evictions) and is reported beside it as `waiting_orders_peak_rss_mb`; CPython seldom gives
freed memory back, so the two are usually close.

Prints progress while it runs, a table and, as its LAST line, one JSON object:
`waiting_orders_rss_mb`, `waiting_orders_peak_rss_mb`, `worker_rss_ready_mb` (before any order),
`start_per_s` (submits per second), `waiting_per_s` (orders per second until all wait),
`events_per_waiting_order` (mean history length of 20 waiting orders),
`worker_cpu_ms_per_waiting_order` and `server_cpu_ms_per_waiting_order` (first submit → worker
idle). Everything lives in a temporary directory and stops with the benchmark. Exit code 0 ok,
1 failed checks, 2 time limit (--timeout) hit, 130 interrupted.
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
import json
import os
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from temporalio.client import Client

from api import orders as order_api
from benchmarks.baseline import WAITING_STAGE
from benchmarks.orderkit import (
    WorkerConfig,
    link_domains,
    link_order,
    seed_client_tenants,
    serve_worker,
)
from benchmarks.stack import (
    WorkerProcess,
    dev_server_pid,
    own_cpu_seconds,
    process_cpu_seconds,
    process_peak_rss_mib,
    process_rss_mib,
    sandbox_server,
    start_dev_server,
    worker_idle,
)
from csp_core.orders.models import Order
from csp_core.registry import Registry
from csp_core.settings import Settings
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from worker import MAX_CACHED_WORKFLOWS

INVITATION_FILES = "*-partner_invitation-*.eml"  # the sink names files <time>-<kind>-<digest>
PROGRESS_S = 15.0
# Orders submitted but not waiting yet, at most (--window): fewer than the sticky cache holds, so
# the orders on their way to the wait are not evicted and replayed between their steps.
WINDOW = 200
MB_PER_MIB = 1.048576
# Issue 11's goal, printed beside the figure.
RSS_MB_GOAL = 250


@dataclass
class Figures:
    orders: int
    submitted: int = 0
    failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timed_out: str | None = None  # the step the time limit stopped
    submit_s: float | None = None  # first submit → last submit answered
    waiting_s: float | None = None  # first submit → visibility counts all waiting
    quiet_s: float | None = None  # first submit → invitations mailed and worker idle
    waiting: int | None = None  # visibility count at the end
    closed: int | None = None  # workflows of the run no longer running
    invitations: int | None = None
    events_per_waiting_order: float | None = None
    worker_cpu_s: float | None = None
    server_cpu_s: float | None = None
    driver_cpu_s: float | None = None
    rss_ready_mib: float | None = None
    rss_mib: float | None = None
    peak_rss_mib: float | None = None


class TimeLimit(Exception):
    """--timeout was reached."""


def count_invitations(outbox: Path) -> int:
    return sum(1 for _ in outbox.glob(INVITATION_FILES)) if outbox.exists() else 0


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def submit_all(
    client: Client,
    registry: Registry,
    orders: list[Order],
    settings: Settings,
    args: argparse.Namespace,
    waiting_query: str,
    figures: Figures,
) -> None:
    """Submit every order, --concurrency submits at a time; with --window, only while fewer
    than that many submitted orders are not waiting yet (visibility count)."""
    gate = asyncio.Semaphore(args.concurrency)
    waiting = 0

    async def watch() -> None:
        nonlocal waiting
        while True:
            waiting = await count(client, waiting_query)
            await asyncio.sleep(0.5)

    async def one(order: Order) -> None:
        async with gate:
            while args.window and figures.submitted - waiting >= args.window:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            try:
                await order_api.submit_order(client, registry, order, settings)
                figures.submitted += 1
            except Exception as error:  # noqa: BLE001 (reported, the others go on)
                figures.failures.append(f"{order.order_id}: {error!r}")

    watcher = asyncio.create_task(watch()) if args.window else None
    try:
        await asyncio.gather(*(one(order) for order in orders))
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def progress(
    client: Client, worker: WorkerProcess, waiting_query: str, began: float, figures: Figures
) -> None:
    last_cpu = (await worker.usage())["cpu_s"]
    last = time.perf_counter()
    while True:
        await asyncio.sleep(PROGRESS_S)
        now = time.perf_counter()
        cpu = (await worker.usage())["cpu_s"]
        waiting = await count(client, waiting_query)
        rss = process_rss_mib(worker.process.pid)
        print(
            f"  {now - began:6.0f}s: {figures.submitted}/{figures.orders} submitted, "
            f"{waiting} waiting; worker CPU {100 * (cpu - last_cpu) / (now - last):.0f}%, "
            f"RSS {rss or 0:.0f} MiB",
            flush=True,
        )
        last_cpu, last = cpu, now


async def until(predicate: Any, interval_s: float = 1.0) -> None:
    """Polls: visibility and the sink's folder have nothing to wait on."""
    while not await predicate():  # noqa: ASYNC110
        await asyncio.sleep(interval_s)


async def measure(
    args: argparse.Namespace,
    client: Client,
    worker: WorkerProcess,
    server_pid: int | None,
    registry: Registry,
    orders: list[Order],
    settings: Settings,
    sink: SmtpSink,
    figures: Figures,
) -> None:
    queue = settings.task_queue
    waiting_query = (
        f"TaskQueue='{queue}' AND ExecutionStatus='Running' "
        f"AND {sa.ORDER_STAGE.name}='{WAITING_STAGE}'"
    )
    deadline = time.monotonic() + args.timeout

    async def step(name: str, work: Any) -> None:
        try:
            await asyncio.wait_for(work, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            figures.timed_out = name
            raise TimeLimit from None

    async def all_waiting() -> bool:
        figures.waiting = await count(client, waiting_query)
        return figures.waiting >= figures.submitted

    async def all_invited() -> bool:
        figures.invitations = await asyncio.to_thread(count_invitations, sink.outbox)
        return figures.invitations >= figures.submitted

    window = f", at most {args.window} not waiting yet" if args.window else ""
    print(
        f"submitting {args.orders} link-invite orders, {args.concurrency} at a time{window}...",
        flush=True,
    )
    server_before = process_cpu_seconds(server_pid)
    worker_before = (await worker.usage())["cpu_s"]
    driver_before = own_cpu_seconds()
    began = time.perf_counter()
    ticker = asyncio.create_task(progress(client, worker, waiting_query, began, figures))
    try:
        await step(
            "submits", submit_all(client, registry, orders, settings, args, waiting_query, figures)
        )
        figures.submit_s = time.perf_counter() - began
        print(f"  all submitted in {figures.submit_s:.1f}s; waiting for them to wait...")
        await step("orders waiting", until(all_waiting))
        figures.waiting_s = time.perf_counter() - began
        await step("invitations mailed", until(all_invited))
        await step("worker idle", worker_idle(worker))
        figures.quiet_s = time.perf_counter() - began
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        server_after = process_cpu_seconds(server_pid)
        if server_before is not None and server_after is not None:
            figures.server_cpu_s = server_after - server_before
        figures.worker_cpu_s = (await worker.usage())["cpu_s"] - worker_before
        figures.driver_cpu_s = own_cpu_seconds() - driver_before
        figures.rss_mib = process_rss_mib(worker.process.pid)
        figures.peak_rss_mib = process_peak_rss_mib(worker.process.pid)
        figures.waiting = await count(client, waiting_query)
        figures.closed = await count(client, f"TaskQueue='{queue}' AND ExecutionStatus!='Running'")
        figures.invitations = count_invitations(sink.outbox)
    figures.events_per_waiting_order = await events_per_waiting_order(client, waiting_query)


async def events_per_waiting_order(client: Client, query: str, sample: int = 20) -> float | None:
    lengths = []
    async for execution in client.list_workflows(query, limit=sample):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        lengths.append(len(history.events))
    return sum(lengths) / len(lengths) if lengths else None


async def benchmark(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:6]
    domains = link_domains(run, args.orders)
    orders = [link_order(run, n, domain) for n, domain in enumerate(domains)]
    settings = Settings(_env_file=None, task_queue=f"bench-waiting-{run}")  # type: ignore[call-arg]
    figures = Figures(orders=args.orders)
    # SIGTERM stops the run like Ctrl-C: the worker, the dev server and the temporary
    # directory are cleaned up on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    with (
        tempfile.TemporaryDirectory(prefix="csp-bench-waiting-") as tmp,
        SmtpSink(outbox=Path(tmp) / "outbox", port=0) as sink,
        sandbox_server(lambda state: seed_client_tenants(state, domains)) as (sandbox_url, _),
    ):
        database_url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        async with await start_dev_server(Path(tmp)) as env:
            client = env.client
            worker = WorkerProcess(
                serve_worker,
                WorkerConfig(
                    target=client.service_client.config.target_host,
                    namespace=client.namespace,
                    order_queue=settings.task_queue,
                    bare_queue=None,
                    sandbox_url=sandbox_url,
                    smtp_port=sink.port,
                    database_url=database_url,
                ),
            )
            try:
                await worker.start()
                figures.rss_ready_mib = process_rss_mib(worker.process.pid)
                registry = Registry.from_url(database_url, migrate=False)  # migrated by the worker
                try:
                    server_pid = dev_server_pid()
                    await measure(
                        args, client, worker, server_pid, registry, orders, settings, sink, figures
                    )
                except TimeLimit:
                    pass
                finally:
                    registry.dispose()
            finally:
                await worker.stop()

    check(figures)
    report(args, figures)
    if figures.problems or figures.failures:
        return 1
    return 2 if figures.timed_out else 0


def check(figures: Figures) -> None:
    n = figures.orders
    problems = figures.problems
    if figures.timed_out:
        return  # the figures cover what was reached; the time limit says the rest
    if figures.submitted != n:
        problems.append(f"{figures.submitted}/{n} orders submitted")
    if figures.waiting != n:
        problems.append(f"visibility counts {figures.waiting} of {n} orders waiting")
    if figures.closed:
        problems.append(f"{figures.closed} order workflow(s) closed instead of waiting")
    if figures.invitations != n:
        problems.append(f"{figures.invitations} invitation e-mails for {n} orders")


def _mb(mib: float | None) -> float | None:
    return round(mib * MB_PER_MIB) if mib is not None else None


def _per_ms(total_s: float | None, count: int) -> float | None:
    return round(total_s * 1000 / count, 1) if total_s is not None and count else None


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 2) if seconds else None


def report(args: argparse.Namespace, f: Figures) -> None:
    n = f.submitted
    print()
    print(
        f"csp-orchestrator waiting benchmark: {f.orders} link-invite orders left waiting for "
        f"acceptance, dev server SQLite + WAL, {os.cpu_count()} CPU(s), one worker process "
        f"(sticky cache {MAX_CACHED_WORKFLOWS} workflows)"
    )
    rows = [
        ("orders submitted", f"{n}/{f.orders}"),
        ("submits", f"{f.submit_s or 0:.1f} s, {_rate(n, f.submit_s) or '-'}/s"),
        ("all waiting after", f"{f.waiting_s or 0:.1f} s, {_rate(n, f.waiting_s) or '-'}/s"),
        ("invitations mailed, worker idle", f"{f.quiet_s or 0:.1f} s"),
        ("waiting (visibility)", f"{f.waiting}"),
        ("history events per waiting order", f"{f.events_per_waiting_order or 0:.1f}"),
        ("worker CPU per order", f"{_per_ms(f.worker_cpu_s, n)} ms"),
        ("server CPU per order", f"{_per_ms(f.server_cpu_s, n)} ms"),
        ("driver CPU per order", f"{_per_ms(f.driver_cpu_s, n)} ms (+ sandbox, SMTP sink)"),
        ("worker RSS ready", f"{f.rss_ready_mib or 0:.0f} MiB"),
        ("worker RSS, orders waiting", f"{f.rss_mib or 0:.0f} MiB = {_mb(f.rss_mib)} MB"),
        ("worker peak RSS", f"{f.peak_rss_mib or 0:.0f} MiB = {_mb(f.peak_rss_mib)} MB"),
    ]
    for name, value in rows:
        print(f"  {name:<34} {value}")
    rss_mb = _mb(f.rss_mib)
    met = "met" if rss_mb is not None and rss_mb <= RSS_MB_GOAL else "NOT met"
    print(f"goal: worker RSS with the orders waiting ≤ {RSS_MB_GOAL} MB: {rss_mb} MB, {met}")
    if f.timed_out:
        print(f"stopped by --timeout {args.timeout:g}s during: {f.timed_out}", file=sys.stderr)
    for failure in f.failures[:5]:
        print(f"submit failed: {failure}", file=sys.stderr)
    for problem in f.problems:
        print(f"check failed: {problem}", file=sys.stderr)
    summary = {
        "waiting_orders_rss_mb": rss_mb,
        "waiting_orders_peak_rss_mb": _mb(f.peak_rss_mib),
        "worker_rss_ready_mb": _mb(f.rss_ready_mib),
        "start_per_s": _rate(n, f.submit_s),
        "waiting_per_s": _rate(n, f.waiting_s),
        "events_per_waiting_order": _round(f.events_per_waiting_order),
        "worker_cpu_ms_per_waiting_order": _per_ms(f.worker_cpu_s, n),
        "server_cpu_ms_per_waiting_order": _per_ms(f.server_cpu_s, n),
        "driver_cpu_ms_per_waiting_order": _per_ms(f.driver_cpu_s, n),
        "orders": f.orders,
        "concurrency": args.concurrency,
        "window": args.window,
        **{
            key: round(value, 2) if isinstance(value, float) else value
            for key, value in asdict(f).items()
            if key not in ("failures", "problems")
        },
        "failures": len(f.failures),
        "checks_ok": not f.problems and not f.failures,
    }
    print(json.dumps(summary, separators=(",", ":"), ensure_ascii=False))


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000, help="orders left waiting")
    parser.add_argument("--concurrency", type=int, default=32, help="submits in flight at a time")
    parser.add_argument(
        "--window",
        type=int,
        default=WINDOW,
        help="submit only while fewer orders than this are not waiting yet (0: no bound, a burst)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="time limit, s")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.window < 0 or args.timeout <= 0:
        parser.error("--orders and --concurrency must be ≥ 1; --window ≥ 0; --timeout > 0")
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
