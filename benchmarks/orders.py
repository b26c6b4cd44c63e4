# ruff: noqa: E402  (the repo root goes on sys.path before the project imports)
"""Order throughput and latency on the local stack: `make bench-orders` (or
`python benchmarks/orders.py`; `make bench` runs it through benchmarks/all.py).

Starts a real Temporal dev server (SQLite file with the dev stack's WAL pragmas), the Partner
Center sandbox (no provisioning delay), an SMTP sink, a SQLite registry and ONE worker process
(the production worker, benchmarks/orderkit.py serve_worker), then runs three workloads:

1. throughput: --orders link-invite orders end to end, each with a fresh order id and its own
   client tenant (seeded in the sandbox as visible but not yet our customer), so every order is
   invited and waits at AWAITING_PARTNER_ACCEPTANCE until the driver signals `partner_accepted`;
2. bare: against the same server, --orders bare workflows (benchmarks/baseline.py) with the same
   sequence of no-op activities and local activities as a completed order's history, around one
   signal: order/bare throughput is the cost of the order's own work;
3. paced latency: once the worker is idle, --paced-orders create-mode orders (each its own new
   tenant, no acceptance needed) started at a steady --paced-rate (open loop: starts keep their
   schedule whatever is in flight); latency is order_api.submit_order → the workflow's result
   (stage ACTIVE), p50 and p95.

Workloads 1 and 2 are closed loops with --concurrency workflows in flight. Throughput is the
capacity of the stack only while enough are in flight to keep the worker and the server busy
(Little's law: throughput ≤ in flight / latency). An unloaded order takes 1-2 s (its steps,
a visibility poll, the signal; a paced create-mode order ~1.2 s today), so 25 in flight would
cap the measurement near 10-20/s, about the goal itself; 50 leaves room above it while the last
50 draining stays a small part of a 200-order run. (Today's order saturates the stack either
way: 25 and 50 in flight measured the same 3-4 orders/s, p50 7 s and 15 s.) The default
--timeout (90 s per workload) bounds the run while today's 200 orders (~50-60 s) finish. The
driver finds waiting workflows as ops would, with one visibility query per tick
(OrderStage='AWAITING_PARTNER_ACCEPTANCE'), and signals each once.

Checks afterwards: every completed order left active licenses, a provider order and exactly its
e-mails in the SMTP sink (by X-CSP-Key/X-CSP-Kind: invitation + active for link-invite, active
for create). Prints a table and, as its LAST line, one JSON object: `orders_per_s`,
`bare_per_s`, `ratio`, `events_per_order` (history of a completed link-invite order),
`events_per_order_create`, `worker_cpu_ms_per_order`, `server_cpu_ms_per_order` (link-invite
workload), `p50_ms_paced`, `p95_ms_paced`, then each workload's details. Stops by itself: each
workload has a time limit (--timeout); workflows still running then are terminated and the
figures cover the completed ones. Exit code 0 ok, 1 failures or failed checks, 2 a time limit
was hit, 130 interrupted (Ctrl-C or SIGTERM, cleaning up as it goes).
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
import uuid
from collections.abc import Awaitable
from typing import Any

from temporalio.client import WorkflowHandle

from api import orders as order_api
from benchmarks.baseline import ACTIVITY, BareWorkflow
from benchmarks.orderkit import (
    CREATE_MAILS,
    LINK_MAILS,
    Phase,
    WorkerConfig,
    create_order,
    link_domains,
    link_order,
    run_phase,
    seed_client_tenants,
    serve_worker,
    step_plan,
    verify_orders,
)
from benchmarks.stack import (
    WorkerProcess,
    dev_server_pid,
    process_cpu_seconds,
    sandbox_server,
    start_dev_server,
    worker_idle,
)
from csp_core.orders.models import Order
from csp_core.registry import Registry
from csp_core.settings import Settings
from csp_core.stages import OrderStage
from sandbox.smtp_sink import SmtpSink
from workflows.order import LicenseOrderWorkflow


async def benchmark(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:6]
    domains = link_domains(run, args.orders)
    orders = [link_order(run, n, domain) for n, domain in enumerate(domains)]
    new_orders = [create_order(run, n) for n in range(args.paced_orders)]
    order_queue, bare_queue = f"bench-orders-{run}", f"bench-bare-{run}"
    mode = f"{args.concurrency} in flight" if args.concurrency else "all at once"
    if args.rate > 0:
        mode += f", started at {args.rate:g}/s"
    # SIGTERM stops the run like Ctrl-C: the worker, the dev server and the temporary
    # directory are cleaned up on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

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
            paced_phase: Phase | None = None
            try:
                usage = await worker.start()
                registry = Registry.from_url(database_url, migrate=False)  # migrated by the worker

                def submitter(batch: list[Order]) -> Any:
                    async def submit(number: int) -> WorkflowHandle:
                        result = await order_api.submit_order(
                            client, registry, batch[number], settings
                        )
                        return client.get_workflow_handle_for(
                            LicenseOrderWorkflow.run, result.workflow_id, run_id=result.run_id
                        )

                    return submit

                async def accept(handle: WorkflowHandle) -> None:
                    await handle.signal(LicenseOrderWorkflow.partner_accepted, "benchmark")

                def order_active(status: Any) -> str | None:
                    return None if status.stage is OrderStage.ACTIVE else str(status.stage)

                async def measured(name: str, phase: Awaitable[Phase]) -> Phase:
                    """A workload's figures plus the CPU the worker and the server spent on it."""
                    nonlocal usage
                    print(f"running {name}...", flush=True)
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
                    f"{args.orders} link-invite orders ({mode})",
                    run_phase(
                        "order (link-invite)",
                        client,
                        order_queue,
                        args.orders,
                        submitter(orders),
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
                    f"{args.orders} bare workflows ({activities} no-op activities + "
                    f"{steps - activities} local activities + 1 signal) ({mode})",
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
                # Latency on a quiet stack: what the previous workloads left is done first.
                await worker_idle(worker)
                usage = await worker.usage()
                paced_phase = await measured(
                    f"{args.paced_orders} create-mode orders started at {args.paced_rate:g}/s",
                    run_phase(
                        f"create @{args.paced_rate:g}/s",
                        client,
                        order_queue,
                        args.paced_orders,
                        submitter(new_orders),
                        None,
                        order_active,
                        concurrency=0,
                        rate=args.paced_rate,
                        time_limit=args.timeout,
                        poll_s=args.poll,
                    ),
                )
            finally:
                final = await worker.stop()

        assert paced_phase is not None  # every workload ran (or the exception went on up)
        problems = verify_orders(
            [
                (orders, order_phase.completed_ids, LINK_MAILS),
                (new_orders, paced_phase.completed_ids, CREATE_MAILS),
            ],
            database_url,
            sandbox_state,
            sink,
        )
        phases = [order_phase, bare_phase, paced_phase]
        peak_rss = (final or usage)["maxrss_mib"]
        report(args, mode, order_phase, bare_phase, paced_phase, peak_rss, problems)
        if problems or any(phase.failures for phase in phases):
            return 1
        return 2 if any(phase.timed_out for phase in phases) else 0


def _ms(value: float | None) -> str:
    return f"{value * 1000:.0f}" if value is not None else "-"


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def _quantile_ms(phase: Phase, q: float) -> int | None:
    value = phase.quantile(q)
    return round(value * 1000) if value is not None else None


def report(
    args: argparse.Namespace,
    mode: str,
    order: Phase,
    bare: Phase,
    paced: Phase,
    peak_rss_mib: float,
    problems: list[str],
) -> None:
    phases = (order, bare, paced)
    header = (
        f"{'workload':<22} {'done':>9} {'wall s':>7} {'wf/s':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'max ms':>7} {'events':>6} {'CPU ms/wf: worker':>17} {'server':>6} {'driver':>6}"
    )
    print()
    print(
        f"csp-orchestrator benchmark: {args.orders} link-invite orders and bare workflows "
        f"({mode}), {args.paced_orders} create-mode orders at {args.paced_rate:g}/s; dev server "
        f"SQLite + WAL, {os.cpu_count()} CPU(s), sandbox without provisioning delay"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        cpu = [
            phase.per_wf_ms(total)
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
    print(
        f"paced create-mode orders: submit → ACTIVE p50 {_ms(paced.quantile(0.5))} ms, "
        f"p95 {_ms(paced.quantile(0.95))} ms at {args.paced_rate:g}/s offered"
    )
    print(f"worker peak RSS: {peak_rss_mib:.0f} MiB (one worker process, all workloads)")
    for phase in phases:
        if phase.timed_out:
            print(f"{phase.name}: stopped after --timeout {args.timeout:g}s", file=sys.stderr)
        for failure in phase.failures[:5]:
            print(f"{phase.name} failure: {failure}", file=sys.stderr)
    for problem in problems:
        print(f"check failed: {problem}", file=sys.stderr)

    def figures(phase: Phase) -> dict[str, Any]:
        return {
            "offered": phase.offered,
            "completed": phase.completed,
            "timed_out": phase.timed_out,
            "wall_s": round(phase.wall_s, 2),
            "wf_per_s": round(phase.throughput, 2),
            "p50_ms": _quantile_ms(phase, 0.5),
            "p95_ms": _quantile_ms(phase, 0.95),
            "history_events": phase.history_events,
            "worker_cpu_ms_per_wf": _round(phase.per_wf_ms(phase.worker_cpu_s)),
            "server_cpu_ms_per_wf": _round(phase.per_wf_ms(phase.server_cpu_s)),
            "driver_cpu_ms_per_wf": _round(phase.per_wf_ms(phase.driver_cpu_s)),
        }

    summary = {
        "orders_per_s": round(order.throughput, 2),
        "bare_per_s": round(bare.throughput, 2),
        "ratio": _round(ratio, 3),
        "events_per_order": order.history_events,
        "events_per_order_create": paced.history_events,
        "worker_cpu_ms_per_order": _round(order.per_wf_ms(order.worker_cpu_s)),
        "server_cpu_ms_per_order": _round(order.per_wf_ms(order.server_cpu_s)),
        "p50_ms_paced": _quantile_ms(paced, 0.5),
        "p95_ms_paced": _quantile_ms(paced, 0.95),
        "paced_rate": args.paced_rate,
        "orders": args.orders,
        "mode": mode,
        "order": figures(order),
        "bare": figures(bare),
        "paced_create": figures(paced),
        "worker_peak_rss_mib": round(peak_rss_mib),
        "checks_ok": not problems,
    }
    print(json.dumps(summary, separators=(",", ":"), ensure_ascii=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200, help="orders (and bare workflows)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="max workflows in flight (0: all at once; then all finish together, near the end)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered submits per second (0: no pacing)"
    )
    parser.add_argument(
        "--paced-orders", type=int, default=100, help="create-mode orders of the latency workload"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=5.0, help="their offered submits per second"
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="time limit per workload, s")
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between looks for waiting workflows"
    )
    args = parser.parse_args(argv)
    if (
        min(args.orders, args.paced_orders) < 1
        or args.concurrency < 0
        or args.rate < 0
        or min(args.timeout, args.poll, args.paced_rate) <= 0
    ):
        parser.error(
            "--orders, --paced-orders must be ≥ 1; --concurrency, --rate ≥ 0; "
            "--timeout, --poll, --paced-rate > 0"
        )
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
