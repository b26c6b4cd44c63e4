"""One Prometheus endpoint per process: the Temporal SDK runtime's metrics and ours together.

The SDK's own Prometheus exporter (`PrometheusConfig`) binds a port of its own and serves only
the runtime's registry, so it cannot share :9464 with the business metrics. Instead the runtime
records into a `MetricBuffer`, which this module drains (every second, and at each scrape) into
a collector of the process's one `prometheus_client` registry. That registry then holds:

- the runtime's metrics (worker and client: `temporal_workflow_completed_total`,
  `temporal_activity_execution_latency_bucket`, `temporal_worker_task_slots_available`,
  `temporal_request_failure_total`, ...), durations in seconds, with the names the SDK's own
  exporter gives with `counters_total_suffix` and `durations_as_seconds`;
- the business metrics of csp_core/metrics.py (provider counters; registry gauges when a
  database URL is given);
- the process collectors (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...).

The worker serves it with `ProcessMetrics.serve("127.0.0.1:9464")` (a thread of its own: a slow
scrape never holds up workflow tasks). The HTTP API mounts it:

    metrics = ProcessMetrics.create(service="csp-api", database_url=settings.database_url)
    client = await connect(settings, runtime=metrics.runtime)   # the client's own metrics
    app.mount("/metrics", metrics.asgi_app())

Nothing here runs in workflow code: workflows stay deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    make_asgi_app,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from csp_core.metrics import BUSINESS_COUNTERS, RegistryGauges
from csp_core.registry.engine import make_engine

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
# Updates between drains: a busy worker records a few hundred a second; drained every second.
# The runtime allocates and touches every slot up front (~100 bytes each): 200,000 slots cost the
# worker ~20 MiB of resident memory from its start (issue 11's waiting orders); 20,000 cost ~2
# and still hold tens of seconds of updates.
BUFFER_SIZE = 20_000
DRAIN_EVERY_S = 1.0

# Histogram buckets (seconds), per metric name: a workflow can take weeks, a poll a minute.
_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BUCKETS = {
    "workflow_endtoend_latency": (1, 10, 60, 600, 3600, 86_400, 7 * 86_400, 30 * 86_400),
    "activity_succeed_endtoend_latency": (0.05, 0.25, 1, 5, 30, 120, 600, 3600),
    "long_request_latency": (0.05, 0.5, 5, 30, 60, 90),
}

Labels = tuple[tuple[str, str], ...]
# Attribute sets whose labels are kept (a worker has a few hundred: types, queues, outcomes).
MAX_ATTRIBUTE_SETS = 4096


def _label_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _labels(attributes: Mapping[str, Any]) -> Labels:
    return tuple(sorted((key, _label_value(value)) for key, value in attributes.items()))


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.count += 1
        self.total += value


@dataclass
class _Family:
    kind: int
    description: str
    series: dict[Labels, Any] = field(default_factory=dict)


class TemporalRuntimeMetrics(Collector):
    """A Temporal `Runtime` whose metrics land in this collector (via a MetricBuffer)."""

    def __init__(self, *, service: str) -> None:
        self.buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        # The runtime's global tags are OpenTelemetry resource attributes, which a buffer does
        # not carry: the service label is added here, to every series.
        self._service = {"service": service}
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None
        # id(attributes) -> (the attributes object, kept alive so its id stays its own; labels)
        self._keys: dict[int, tuple[Mapping[str, Any], Labels]] = {}

    def drain(self) -> None:
        """Fold every buffered update into the series (counters add, gauges set, histograms
        observe)."""
        with self._lock:
            for update in self.buffer.retrieve_updates():
                metric = update.metric
                family = self._families.get(metric.name)
                if family is None:
                    family = _Family(metric.kind, metric.description or metric.name)
                    self._families[metric.name] = family
                key = self._key_of(update.attributes)
                if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family.series[key] = family.series.get(key, 0) + update.value
                elif metric.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                    histogram = family.series.get(key)
                    if histogram is None:
                        bounds = _buckets(metric.name)
                        histogram = family.series[key] = _Histogram(bounds, [0] * len(bounds))
                    histogram.observe(float(update.value))
                else:
                    family.series[key] = update.value

    def _key_of(self, attributes: Mapping[str, Any]) -> Labels:
        """A series' labels. The runtime hands over the same attributes object for the same
        attribute set (its documented contract), so they are built once per set, not per
        update: the drain runs on every worker task's metrics."""
        cached = self._keys.get(id(attributes))
        if cached is None or cached[0] is not attributes:
            if len(self._keys) >= MAX_ATTRIBUTE_SETS:  # never a leak, whatever the runtime does
                self._keys.clear()
            cached = (attributes, _labels({**attributes, **self._service}))
            self._keys[id(attributes)] = cached
        return cached[1]

    def start_draining(self) -> None:
        """Drain in a daemon thread every second, so the buffer never fills between scrapes."""
        if self._drainer is not None:
            return

        def loop() -> None:
            while not self._stop.wait(DRAIN_EVERY_S):
                self.drain()

        self._drainer = threading.Thread(target=loop, name="temporal-metrics-drain", daemon=True)
        self._drainer.start()

    def stop_draining(self) -> None:
        self._stop.set()
        if self._drainer is not None:
            self._drainer.join(timeout=5)
            self._drainer = None

    def describe(self) -> Iterable[Metric]:
        return []  # families appear as the runtime records them

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, family in sorted(self._families.items()):
                yield _exposed(name, family)


def _buckets(name: str) -> tuple[float, ...]:
    for suffix, bounds in _BUCKETS.items():
        if name.endswith(suffix):
            return bounds
    return _DEFAULT_BUCKETS


def _exposed(name: str, family: _Family) -> Metric:
    if family.kind == BUFFERED_METRIC_KIND_COUNTER:
        metric = Metric(name, family.description, "counter")
        for labels, value in family.series.items():
            metric.add_sample(f"{name}_total", dict(labels), value)
        return metric
    if family.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
        metric = Metric(name, family.description, "histogram")
        for labels, histogram in family.series.items():
            for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
                metric.add_sample(
                    f"{name}_bucket", {**dict(labels), "le": floatToGoString(bound)}, count
                )
            infinite = {**dict(labels), "le": "+Inf"}
            metric.add_sample(f"{name}_bucket", infinite, histogram.count)
            metric.add_sample(f"{name}_count", dict(labels), histogram.count)
            metric.add_sample(f"{name}_sum", dict(labels), histogram.total)
        return metric
    metric = Metric(name, family.description, "gauge")
    for labels, value in family.series.items():
        metric.add_sample(name, dict(labels), value)
    return metric


@dataclass
class MetricsServer:
    """The /metrics HTTP server of a process (a daemon thread); `close()` stops it."""

    host: str
    port: int
    _server: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6); port 0 picks a free one."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


class ProcessMetrics:
    """This process's Prometheus registry: the Temporal runtime's metrics, the business ones
    and the process's own. Connect Temporal clients with `runtime=` so theirs land here too."""

    def __init__(self, temporal: TemporalRuntimeMetrics, registry: CollectorRegistry) -> None:
        self.temporal = temporal
        self.registry = registry
        self._engine: Engine | None = None

    @classmethod
    def create(cls, *, service: str, database_url: str | None = None) -> ProcessMetrics:
        """`service` tags the runtime's metrics (worker or API); `database_url` adds the registry
        gauges (orders by stage, renewals by status, notices), queried at scrape time."""
        temporal = TemporalRuntimeMetrics(service=service)
        registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        for counter in BUSINESS_COUNTERS:
            registry.register(counter)
        registry.register(temporal)
        metrics = cls(temporal, registry)
        if database_url:
            # Its own small pool: a scrape never waits behind the activities' connections.
            metrics._engine = make_engine(database_url, **_small_pool(database_url))
            registry.register(RegistryGauges(metrics._engine))
        temporal.start_draining()
        return metrics

    @property
    def runtime(self) -> Runtime:
        return self.temporal.runtime

    def serve(self, address: str) -> MetricsServer:
        """Serve /metrics on `host:port` from a thread of its own."""
        host, port = parse_address(address)
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(host, server.server_port, server)

    def asgi_app(self) -> Any:
        """An ASGI app serving this registry, to mount at /metrics in the HTTP API."""
        return make_asgi_app(registry=self.registry)

    def close(self) -> None:
        self.temporal.stop_draining()
        if self._engine is not None:
            self._engine.dispose()


def _small_pool(database_url: str) -> dict[str, Any]:
    return {} if database_url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 1}


__all__ = [
    "DEFAULT_METRICS_ADDRESS",
    "MetricsServer",
    "ProcessMetrics",
    "TemporalRuntimeMetrics",
    "parse_address",
]
