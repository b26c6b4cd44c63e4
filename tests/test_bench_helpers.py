"""The benchmark harness's own helpers (not the figures: those are printed, never asserted):
benchmarks/all.py judging goals and choosing its exit code, the worker-process exchange in
benchmarks/stack.py, and the phase quantiles in benchmarks/orderkit.py."""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection

from benchmarks import all as bench_all
from benchmarks.orderkit import Phase
from benchmarks.stack import WorkerProcess, answer_driver


def outcomes(**summaries: dict | None) -> dict[str, bench_all.Outcome]:
    found = {name: bench_all.Outcome() for name in ("orders", "waiting", "renewals")}
    for name, summary in summaries.items():
        found[name] = bench_all.Outcome(rc=0, summary=summary)
    return found


def test_every_goal_is_judged_from_its_benchmark_summary(capsys) -> None:
    figures = {
        "orders": {
            "orders_per_s": 12.0,
            "ratio": 0.85,
            "events_per_order": 40,
            "worker_cpu_ms_per_order": 81.0,
            "server_cpu_ms_per_order": 90.0,
            "p95_ms_paced": 900,
            "bare_per_s": 14.1,
        },
        "waiting": {"waiting_orders_rss_mb": 251},
        "renewals": {
            "renewal_start_ratio": 0.8,
            "worker_cpu_ms_per_renewal": 9.9,
            "worker_peak_rss_mib_renewals": 380.0,
        },
    }

    summary = bench_all.report(outcomes(**figures))

    assert summary["goals_met"] == {
        "orders_per_s": True,
        "ratio": False,
        "events_per_order": True,  # a goal's bound itself is met
        "worker_cpu_ms_per_order": False,
        "server_cpu_ms_per_order": True,
        "p95_ms_paced": True,
        "renewal_start_ratio": True,
        "worker_cpu_ms_per_renewal": True,
        "worker_peak_rss_mib_renewals": True,
        "waiting_orders_rss_mb": False,
    }
    assert summary["orders_per_s"] == 12.0 and summary["bare_per_s"] == 14.1
    assert set(bench_all.GOALS) <= set(summary)
    assert "7 of 10 goals met" in capsys.readouterr().out


def test_a_benchmark_not_run_leaves_its_goals_unjudged() -> None:
    summary = bench_all.report(outcomes(orders={"orders_per_s": 3.3}))

    assert summary["goals_met"]["orders_per_s"] is False
    assert summary["goals_met"]["waiting_orders_rss_mb"] is None
    assert summary["renewal_start_ratio"] is None


def test_the_exit_code_reports_failed_checks_and_time_limits_never_missed_goals() -> None:
    def code(*results: tuple[int, dict | None]) -> int:
        return bench_all.exit_code(
            {str(n): bench_all.Outcome(rc, summary) for n, (rc, summary) in enumerate(results)}
        )

    assert code((0, {"orders_per_s": 0.1})) == 0
    assert code((0, {}), (2, {})) == 2
    assert code((2, {}), (1, {})) == 1
    assert code((0, None)) == 1  # no summary line
    assert code((-9, None), (0, {})) == 1


def test_phase_quantiles() -> None:
    phase = Phase("p", 100, latencies=[n / 100 for n in range(1, 101)])

    assert phase.quantile(0.5) == 0.505
    assert round(phase.quantile(0.95), 4) == 0.9505
    assert Phase("one", 1, latencies=[0.2]).quantile(0.95) == 0.2
    assert Phase("none", 1).quantile(0.5) is None


async def serve_nothing(config: None, conn: Connection) -> None:
    await answer_driver(conn)


async def test_overlapping_and_cancelled_usage_reads_each_get_their_own_answer() -> None:
    worker = WorkerProcess(serve_nothing, None, name="bench-helper-test")
    ready = await worker.start()
    try:
        assert ready["maxrss_mib"] > 0
        cancelled = asyncio.create_task(worker.usage())
        await asyncio.sleep(0)
        cancelled.cancel()
        answers = await asyncio.gather(*(worker.usage() for _ in range(20)))
        assert all(set(answer) == {"maxrss_mib", "cpu_s"} for answer in answers)
    finally:
        final = await worker.stop()
    assert final is not None and final["cpu_s"] >= ready["cpu_s"]
    assert not worker.process.is_alive()
