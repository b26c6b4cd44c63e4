"""Every benchmark of issue 11 and its goals in one table: `make bench` (or
`python benchmarks/all.py`).

Runs benchmarks/orders.py, benchmarks/waiting.py and benchmarks/renewals.py one after the other,
each as a subprocess (so each has a fresh stack, and its own worker and memory figures), shows
their output as it comes, reads the LAST stdout line of each as its JSON summary, then prints
one table, figure | measured | goal | met?, for every goal in GOALS, and as its LAST line one
JSON object: each goal's figure, a few more figures, `goals_met` (figure → true/false, null when
not measured) and `benchmarks` (each one's exit code).

The defaults are the issue's sizes (200 link-invite orders, 100 paced create-mode orders,
10,000 waiting orders, 10,000 renewal charges): about 40 minutes on the 2-core box with today's
order (orders ~4, waiting ~21, renewals ~15). A quick run (~8 minutes):
`make bench BENCH_ARGS="--waiting 1000 --charges 1000"` (or `--only orders`).

Exit code: 1 if a benchmark failed its own checks, crashed or printed no summary, else 2 if one
hit its time limit, else 0; 130 interrupted. A missed goal is reported, never an exit code.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Goal:
    source: str  # the benchmark whose summary carries the figure
    compare: Callable[[float, float], bool]
    target: float
    unit: str
    text: str  # what the figure is, for the table

    @property
    def sign(self) -> str:
        return "≥" if self.compare is operator.ge else "≤"


AT_LEAST, AT_MOST = operator.ge, operator.le
# Issue 11's goals, the one place they live. Each key is a figure of a benchmark's summary.
GOALS: dict[str, Goal] = {
    "orders_per_s": Goal("orders", AT_LEAST, 10, "orders/s", "link-invite orders end to end"),
    "ratio": Goal("orders", AT_LEAST, 0.9, "× bare", "order / bare workflow throughput"),
    "events_per_order": Goal("orders", AT_MOST, 40, "events", "history events per order"),
    "worker_cpu_ms_per_order": Goal("orders", AT_MOST, 80, "ms", "worker CPU per order"),
    "server_cpu_ms_per_order": Goal("orders", AT_MOST, 100, "ms", "server CPU per order"),
    "p95_ms_paced": Goal("orders", AT_MOST, 1000, "ms", "p95 submit → ACTIVE, create @5/s"),
    "renewal_start_ratio": Goal("renewals", AT_LEAST, 0.8, "× bare", "renewal start rate"),
    "worker_cpu_ms_per_renewal": Goal("renewals", AT_MOST, 10, "ms", "worker CPU per renewal"),
    "worker_peak_rss_mib_renewals": Goal(
        "renewals", AT_MOST, 400, "MiB", "worker peak RSS, renewal cycle"
    ),
    "waiting_orders_rss_mb": Goal(
        "waiting", AT_MOST, 250, "MB", "worker RSS, orders awaiting acceptance"
    ),
}
# More figures carried into the final JSON (not goals): benchmark → its keys.
EXTRAS = {
    "orders": ["bare_per_s", "events_per_order_create", "p50_ms_paced", "worker_peak_rss_mib"],
    "waiting": [
        "waiting_orders_peak_rss_mb",
        "worker_rss_ready_mb",
        "start_per_s",
        "waiting_per_s",
        "events_per_waiting_order",
        "worker_cpu_ms_per_waiting_order",
        "server_cpu_ms_per_waiting_order",
    ],
    "renewals": ["events_per_renewal", "server_cpu_ms_per_renewal", "charges"],
}
RENAMED = {  # keys two summaries share, named after their benchmark in the final JSON
    ("orders", "worker_peak_rss_mib"): "worker_peak_rss_mib_orders",
    ("waiting", "start_per_s"): "waiting_start_per_s",
    ("renewals", "charges"): "renewal_charges",
}


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each benchmark's command line, in the order they run."""
    python = sys.executable
    return {
        "orders": [
            python,
            str(HERE / "orders.py"),
            "--orders",
            str(args.orders),
            "--paced-orders",
            str(args.paced_orders),
        ],
        "waiting": [python, str(HERE / "waiting.py"), "--orders", str(args.waiting)],
        "renewals": [python, str(HERE / "renewals.py"), "--charges", str(args.charges)],
    }


@dataclass
class Outcome:
    rc: int | None = None  # None: not run
    summary: dict[str, Any] | None = None


def run_one(name: str, command: list[str]) -> Outcome:
    """Run one benchmark, its output passed through; its last stdout line is its summary."""
    print(f"\n=== {name}: {' '.join(Path(part).name for part in command[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    last = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if line.strip():
                    last = line
            rc = process.wait()
        except BaseException:
            # Ctrl-C reaches the child too; SIGTERM (below) is passed on: both clean up.
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
            raise
    try:
        summary = json.loads(last)
    except json.JSONDecodeError:
        summary = None
    return Outcome(rc, summary if isinstance(summary, dict) else None)


def exit_code(outcomes: dict[str, Outcome]) -> int:
    ran = [outcome for outcome in outcomes.values() if outcome.rc is not None]
    if any(outcome.rc not in (0, 2) or outcome.summary is None for outcome in ran):
        return 1
    return 2 if any(outcome.rc == 2 for outcome in ran) else 0


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def report(outcomes: dict[str, Outcome]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    goals_met: dict[str, bool | None] = {}
    rows = []
    for figure, goal in GOALS.items():
        summary = outcomes[goal.source].summary or {}
        value = summary.get(figure)
        met = goal.compare(value, goal.target) if isinstance(value, int | float) else None
        figures[figure], goals_met[figure] = value, met
        rows.append(
            (
                f"{figure} ({goal.text})",
                f"{_show(value)} {goal.unit}" if value is not None else "-",
                f"{goal.sign} {_show(float(goal.target))} {goal.unit}",
                {True: "yes", False: "NO", None: "-"}[met],
            )
        )
    for source, keys in EXTRAS.items():
        summary = outcomes[source].summary or {}
        for key in keys:
            figures[RENAMED.get((source, key), key)] = summary.get(key)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("figure", "measured", "goal", "met?")
    widths = [max(width, len(title)) for width, title in zip(widths, header, strict=True)]
    print()
    print(f"csp-orchestrator: issue 11's goals on this machine ({os.cpu_count()} CPU(s))")
    line = "  ".join(f"{title:<{width}}" for title, width in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
            f"{row[3]:<{widths[3]}}"
        )
    met_count = sum(met is True for met in goals_met.values())
    print(f"{met_count} of {len(GOALS)} goals met", end="")
    for name, outcome in outcomes.items():
        if outcome.rc is None:
            print(f"; {name} not run", end="")
        elif outcome.rc != 0 or outcome.summary is None:
            state = {1: "failed its checks", 2: "hit its time limit"}.get(outcome.rc or 0)
            state = state or f"exited {outcome.rc}"
            if outcome.summary is None:
                state += ", no summary"
            print(f"; {name} {state}", end="")
    print()
    return {
        **figures,
        "goals_met": goals_met,
        "benchmarks": {name: {"rc": outcome.rc} for name, outcome in outcomes.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200, help="orders.py --orders")
    parser.add_argument("--paced-orders", type=int, default=100, help="orders.py --paced-orders")
    parser.add_argument("--waiting", type=int, default=10_000, help="waiting.py --orders")
    parser.add_argument("--charges", type=int, default=10_000, help="renewals.py --charges")
    parser.add_argument(
        "--only",
        action="append",
        choices=["orders", "waiting", "renewals"],
        help="run only these benchmarks (repeatable); the others' figures show as -",
    )
    args = parser.parse_args(argv)
    if min(args.orders, args.paced_orders, args.waiting, args.charges) < 1:
        parser.error("sizes must be ≥ 1")
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM ends the run like Ctrl-C: the running benchmark is told to clean up first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    outcomes = {name: Outcome() for name in commands(args)}
    try:
        for name, command in commands(args).items():
            if args.only is None or name in args.only:
                outcomes[name] = run_one(name, command)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    summary = report(outcomes)
    print(json.dumps(summary, separators=(",", ":"), ensure_ascii=False))
    return exit_code(outcomes)


if __name__ == "__main__":
    sys.exit(main())
