"""Prometheus metrics as ops scrape them: the worker process's /metrics over HTTP after a real
order (time-skipping server, sandbox over HTTP, SMTP sink, SQLite registry), provider errors by
kind against the sandbox's faults, and what a scrape says when the registry is down."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from csp_core.providers.metered import MeteredProvider
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.port import ProviderError
from csp_core.registry import Registry
from csp_core.settings import Settings
from sandbox.smtp_sink import SmtpSink
from temporalutil.metrics import ProcessMetrics
from tests.conftest import SANDBOX_TOKEN
from tests.support.worker_process import (
    run_create_order,
    sample,
    scrape_until,
    worker_process,
    worker_settings,
)


async def test_worker_metrics_after_an_order(
    ts_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
    tmp_path: Path,
) -> None:
    config = worker_settings(
        ts_env, sandbox, SANDBOX_TOKEN, smtp_sink, f"sqlite:///{registry_path}"
    )
    with worker_process(config, tmp_path) as worker:
        before = worker.scrape()
        # Every stage is listed from the start, at 0: a graph has a line before any order.
        assert sample(before, "csp_orders", stage="ACTIVE") == 0
        assert sample(before, "csp_orders", stage="AWAITING_PARTNER_ACCEPTANCE") == 0
        assert sample(before, "csp_registry_up") == 1

        await run_create_order(ts_env, registry, worker, config["TASK_QUEUE"])
        scraped = await scrape_until(
            worker, "temporal_workflow_completed_total", workflow_type="LicenseOrderWorkflow"
        )

    # Orders by stage, from the registry the order was recorded in.
    assert sample(scraped, "csp_orders", stage="ACTIVE") == 1
    assert sample(scraped, "csp_orders", stage="FAILED") == 0
    # Provider calls by operation, as the worker made them to the sandbox over HTTP.
    calls = "csp_provider_calls_total"
    assert sample(scraped, calls, provider="sandbox", operation="domain_available") == 1
    assert sample(scraped, calls, provider="sandbox", operation="create_customer") == 1
    assert sample(scraped, calls, provider="sandbox", operation="place_order") == 1
    assert sample(scraped, "csp_provider_errors_total") is None  # no error happened
    assert sample(scraped, "csp_provider_call_duration_seconds_count", operation="place_order")
    # The order-active e-mail is in the ledger as sent; nothing undeliverable.
    assert sample(scraped, "csp_notices", status="sent") == 1
    assert sample(scraped, "csp_notices", status="undeliverable") == 0
    # The Temporal SDK runtime's own metrics, from the same endpoint.
    assert (
        sample(scraped, "temporal_workflow_completed_total", workflow_type="LicenseOrderWorkflow")
        == 1
    )
    assert sample(scraped, "temporal_activity_execution_latency_count", service="csp-worker")
    assert sample(scraped, "temporal_worker_task_slots_available", worker_type="ActivityWorker")
    assert sample(scraped, "process_resident_memory_bytes")


def scrape(metrics: ProcessMetrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def throttle_once(sandbox: httpx.Client, method: str, path_prefix: str) -> None:
    """The sandbox answers the next such call 429 (Retry-After), doing nothing."""
    fault = {"method": method, "path_prefix": path_prefix, "status": 429, "times": 1}
    sandbox.post("/sandbox/faults", json=fault).raise_for_status()


async def test_provider_errors_are_counted_by_operation_and_kind(
    sandbox: httpx.Client, sandbox_url: str
) -> None:
    metrics = ProcessMetrics.create(service="test")
    try:
        before = scrape(metrics)
        async with PartnerCenterClient(sandbox_url, SecretStr(SANDBOX_TOKEN)) as client:
            provider = MeteredProvider(client, "sandbox")
            throttle_once(sandbox, "HEAD", "/v1/domains")
            with pytest.raises(ProviderError) as throttled:
                await provider.domain_available("fresh.onmicrosoft.com")
            assert throttled.value.status == 429
            assert await provider.domain_available("fresh.onmicrosoft.com") is True
            with pytest.raises(ProviderError) as refused:  # an unknown tenant: 404, for good
                await provider.get_subscription("no-such-tenant", "no-such-subscription")
            assert not refused.value.transient
        after = scrape(metrics)
    finally:
        metrics.close()

    def delta(name: str, **labels: str) -> float:
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    ops = {"provider": "sandbox"}
    assert delta("csp_provider_calls_total", operation="domain_available", **ops) == 2
    assert delta("csp_provider_calls_total", operation="get_subscription", **ops) == 1
    errors = "csp_provider_errors_total"
    assert delta(errors, operation="domain_available", kind="throttled", **ops) == 1
    assert delta(errors, operation="get_subscription", kind="refused", **ops) == 1
    assert delta(errors, operation="domain_available", kind="refused", **ops) == 0


def test_a_scrape_says_when_the_registry_cannot_be_read() -> None:
    # Nothing listens on port 1: the registry is down, the endpoint is not.
    metrics = ProcessMetrics.create(
        service="test", database_url="postgresql+psycopg://csp@127.0.0.1:1/csp?connect_timeout=2"
    )
    try:
        scraped = scrape(metrics)
    finally:
        metrics.close()
    assert sample(scraped, "csp_registry_up") == 0
    assert sample(scraped, "csp_orders", stage="ACTIVE") is None


def test_metrics_address_setting() -> None:
    assert Settings().metrics_address == "127.0.0.1:9464"
    assert Settings(metrics_address="0.0.0.0:9464").metrics_address == "0.0.0.0:9464"
    assert Settings(metrics_address="").metrics_address is None  # no endpoint
    with pytest.raises(ValidationError, match="host:port"):
        Settings(metrics_address="9464")


async def test_the_api_serves_metrics_with_its_temporal_clients(
    ts_env: WorkflowEnvironment, registry_path: Path, registry: Registry
) -> None:
    """The HTTP API as `python -m http_api` builds it: /metrics on its own port, its Temporal
    client on the metrics runtime, the registry gauges; served by uvicorn on a free port."""
    from http_api.app import create_app

    settings = Settings(
        temporal_address=ts_env.client.service_client.config.target_host,
        temporal_namespace=ts_env.client.namespace,
    )
    metrics = ProcessMetrics.create(service="csp-api", database_url=f"sqlite:///{registry_path}")
    app = create_app(settings, registry=registry, metrics=metrics)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        client = await app.state.backends.client()  # what the routes use
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{sock.getsockname()[1]}/metrics/")
        response.raise_for_status()
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
        sock.close()
        metrics.close()
    scraped = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert sample(scraped, "temporal_request_total", operation="GetSystemInfo", service="csp-api")
    assert sample(scraped, "csp_orders", stage="ACTIVE") == 0


def test_error_kinds() -> None:
    from csp_core.providers.metered import error_kind
    from csp_core.providers.port import ProviderNotOffered

    assert error_kind(ProviderError("x", status=429)) == "throttled"
    assert error_kind(ProviderError("x", status=503)) == "unavailable"
    assert error_kind(ProviderError("x", status=409, code="RenewalInProgress")) == "unavailable"
    assert error_kind(ProviderError("x", status=400, code="800090")) == "refused"
    assert error_kind(ProviderNotOffered("change seats", "Ingram Micro")) == "not_offered"
    assert error_kind(ValueError("unreadable answer")) == "error"
