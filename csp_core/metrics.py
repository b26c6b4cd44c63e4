"""Business metrics for Prometheus: what ops watch beside the Temporal UI.

Two kinds, each chosen for what stays right across worker restarts and several workers:

- **Counters of what this process did** (provider calls, errors and their latency, by
  operation), counted where the call is made (csp_core/providers/metered.py), never in workflow
  code. Each worker counts its own calls; Prometheus adds workers up with `sum`, and `rate` /
  `increase` absorb the reset of a restart.
- **Gauges of where things stand, read from the registry at scrape time** (orders by stage,
  renewal charges by period and payment status, e-mail notices by status). The registry is the
  one record every worker shares, written by activities as each order and charge moves, so any
  worker's scrape is the whole truth: a restart loses nothing, a replay counts nothing twice,
  and workflows stay free of metric I/O. Several workers report the same numbers: aggregate them
  with `max`, not `sum`.

Names (the Grafana dashboard in deploy/grafana/ and the README use these):

| metric | labels | kind |
|---|---|---|
| `csp_orders` | `stage` (every OrderStage, 0 when none) | gauge |
| `csp_renewal_charges` | `period`, `payment_status` | gauge |
| `csp_renewal_charges_amount_mxn` | `period`, `payment_status` | gauge |
| `csp_notices` | `status` (pending, sent, undeliverable) | gauge |
| `csp_registry_up` | (none) | gauge: 0 when the registry could not be read |
| `csp_provider_calls_total` | `provider`, `operation` | counter |
| `csp_provider_errors_total` | `provider`, `operation`, `kind` | counter |
| `csp_provider_call_duration_seconds` | `provider`, `operation` | histogram |

`kind` of a provider error: `throttled` (429), `unavailable` (other retryable answers: 5xx, 408,
a renewal in progress, no connection), `refused` (a business refusal: retrying will not help),
`not_offered` (the provider has no API for it, e.g. Ingram's seat changes: ops do it),
`error` (anything else, e.g. an answer we could not read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import structlog
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from csp_core.registry.notifications import NotificationStatus
from csp_core.registry.tables import Notification, Order, RenewalCharge
from csp_core.stages import OrderStage, PaymentStatus

log = structlog.get_logger(__name__)

# Created unregistered: each process's metrics registry (temporalutil/metrics.py) registers them,
# so tests can build several registries in one process.
PROVIDER_CALLS = Counter(
    "csp_provider_calls",
    "Calls to the provider (Partner Center, Ingram Micro, or the sandbox), by port operation.",
    ["provider", "operation"],
    registry=None,
)
PROVIDER_ERRORS = Counter(
    "csp_provider_errors",
    "Provider calls that failed, by port operation and kind "
    "(throttled, unavailable, refused, not_offered, error).",
    ["provider", "operation", "kind"],
    registry=None,
)
PROVIDER_CALL_SECONDS = Histogram(
    "csp_provider_call_duration_seconds",
    "How long a provider call took, failures included.",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)

BUSINESS_COUNTERS: tuple[Collector, ...] = (PROVIDER_CALLS, PROVIDER_ERRORS, PROVIDER_CALL_SECONDS)


class RegistryGauges(Collector):
    """Orders by stage, renewal charges by period and status, and notices by status, counted
    in the registry each time Prometheus scrapes (three GROUP BY queries on indexed columns)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Registration must not query the database; collect() does, at scrape time.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "csp_registry_up", "1 when the registry answered this scrape's queries, else 0."
        )
        try:
            families = self._read()
        except SQLAlchemyError as err:
            # The metrics stay up when the database is down: that is what this gauge shows.
            log.warning("metrics.registry_unreadable", error=type(err).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        with self.engine.connect() as conn:
            stages = dict(
                conn.execute(select(Order.stage, func.count()).group_by(Order.stage)).all()
            )
            charges = conn.execute(
                select(
                    RenewalCharge.period,
                    RenewalCharge.status,
                    func.count(),
                    func.coalesce(func.sum(RenewalCharge.amount), 0),
                ).group_by(RenewalCharge.period, RenewalCharge.status)
            ).all()
            notices = dict(
                conn.execute(
                    select(Notification.status, func.count()).group_by(Notification.status)
                ).all()
            )

        orders = GaugeMetricFamily(
            "csp_orders", "Orders in the registry by their current stage.", labels=["stage"]
        )
        for stage in [*(s.value for s in OrderStage), *sorted(set(stages) - set(OrderStage))]:
            orders.add_metric([stage], stages.get(stage, 0))

        count = GaugeMetricFamily(
            "csp_renewal_charges",
            "Renewal charges by billing period (YYYY-MM) and payment status.",
            labels=["period", "payment_status"],
        )
        amount = GaugeMetricFamily(
            "csp_renewal_charges_amount_mxn",
            "What those renewal charges amount to, in MXN.",
            labels=["period", "payment_status"],
        )
        seen = {(period, status): (n, total) for period, status, n, total in charges}
        # Every status of every period that has charges, 0 included, so a status emptying out
        # (all PENDING paid) shows as 0 rather than vanishing from the graph.
        for period in sorted({period for period, _ in seen}):
            for status in [s.value for s in PaymentStatus]:
                n, total = seen.get((period, status), (0, 0))
                count.add_metric([period, status], n)
                amount.add_metric([period, status], float(total))

        notice = GaugeMetricFamily(
            "csp_notices",
            "E-mail notices in the ledger by status; undeliverable ones need a person.",
            labels=["status"],
        )
        for status in NotificationStatus:
            notice.add_metric([status.value], notices.get(status.value, 0))
        return [orders, count, amount, notice]


__all__ = [
    "BUSINESS_COUNTERS",
    "PROVIDER_CALLS",
    "PROVIDER_CALL_SECONDS",
    "PROVIDER_ERRORS",
    "RegistryGauges",
]
