"""The local stack's supervision, on toy services (the real stack is never started here), and
its HTTP API service started alone on a free port."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from csp_core.settings import get_settings
from devstack import Ports, Service, Supervisor, banner, parse_args, services
from sandbox.smtp_sink import free_port

LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "time.sleep(120)\n"
)


def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_killed_service_is_restarted_on_its_port_and_the_log_says_so() -> None:
    port = free_port()
    toy = Service("worker-1", [sys.executable, "-c", LISTENER, str(port)], port)
    lines: list[str] = []
    supervisor = Supervisor([], lines.append, first_delay_s=0.2)
    supervisor.start(toy)
    try:
        toy.wait_ready(10)
        assert toy.process is not None
        first_pid = toy.process.pid

        os.kill(first_pid, signal.SIGKILL)
        until(lambda: (supervisor.check(), any("restarted" in line for line in lines))[1])

        assert lines[0] == "worker-1 exited (-9); restarting in 0.2 s"
        assert toy.process.pid != first_pid
        assert lines[1] == f"worker-1 restarted (pid {toy.process.pid})"
        toy.wait_ready(10)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        supervisor.stop_all()
    assert toy.exit_code() is not None  # stopped, nothing left behind


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_minute() -> None:
    clock = FakeClock()
    crashing = Service("sandbox", [sys.executable, "-c", "raise SystemExit(3)"])
    lines: list[str] = []
    supervisor = Supervisor([], lines.append, clock=clock)
    delays = []
    supervisor.start(crashing)
    try:
        for _ in range(7):
            assert crashing.process is not None
            crashing.process.wait(10)
            supervisor.check()  # notices the exit, schedules the restart
            delays.append(lines[-1])
            assert crashing.restart_at is not None
            clock.now = crashing.restart_at
            supervisor.check()  # restarts it
        assert delays == [
            f"sandbox exited (3); restarting in {d} s" for d in (1, 2, 4, 8, 16, 30, 30)
        ]
        # Up for a minute, then dies: a fresh incident, back to the first delay.
        crashing.process.wait(10)
        clock.now += 60
        supervisor.check()
        assert lines[-1] == "sandbox exited (3); restarting in 1 s"
    finally:
        supervisor.stop_all()


def test_stopping_during_a_backoff_wait_starts_nothing() -> None:
    clock = FakeClock()
    crashing = Service("smtp-sink", [sys.executable, "-c", "raise SystemExit(1)"])
    supervisor = Supervisor([], lambda _: None, clock=clock)
    supervisor.start(crashing)
    assert crashing.process is not None
    crashing.process.wait(10)
    supervisor.check()
    first = crashing.process

    supervisor.stop_all()
    clock.now += 60
    supervisor.check()

    assert crashing.process is first and crashing.restart_at is None


def test_workers_option(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKERS", "2")
    assert parse_args([]).workers == 2
    assert parse_args(["--workers", "3"]).workers == 3
    monkeypatch.setenv("WORKERS", "two")
    try:
        parse_args([])
    except SystemExit as exited:
        assert exited.code == 2
    else:
        raise AssertionError("WORKERS=two was accepted")


def test_each_worker_gets_its_own_metrics_port_and_the_banner_shows_it(  # type: ignore[no-untyped-def]
    monkeypatch, tmp_path
) -> None:
    import devstack
    from csp_core.settings import get_settings

    monkeypatch.chdir(tmp_path)  # services() makes its .data folders here
    monkeypatch.setenv("METRICS_ADDRESS", "127.0.0.1:9464")
    get_settings.cache_clear()
    try:
        workers = [s for s in devstack.services(2) if s.name.startswith("worker-")]
        banner = devstack.banner(2, devstack.Ports.from_settings())
    finally:
        get_settings.cache_clear()
    # Two workers on one machine cannot share a port: 9464 and 9465, each its readiness port.
    assert [(w.name, w.port, w.env) for w in workers] == [
        ("worker-1", 9464, {"METRICS_ADDRESS": "127.0.0.1:9464"}),
        ("worker-2", 9465, {"METRICS_ADDRESS": "127.0.0.1:9465"}),
    ]
    assert "Metrics       http://127.0.0.1:9464/metrics  worker-2 :9465" in banner


def forget(monkeypatch, *names: str) -> None:  # type: ignore[no-untyped-def]
    """Unset these for the test, and unset again afterwards (devstack sets them)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_provider_ingram_points_the_worker_at_the_sandboxs_xvantage_face(
    monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from csp_core.settings import ProviderKind, get_settings
    from devstack import SANDBOX_INGRAM, prepare_environment, services

    forget(monkeypatch, "PROVIDER_BASE_URL", "PROVIDER_API_KEY", *SANDBOX_INGRAM)
    monkeypatch.setenv("PROVIDER", "ingram")
    monkeypatch.chdir(tmp_path)
    try:
        assert prepare_environment() is None
        settings = get_settings()
        assert settings.provider is ProviderKind.INGRAM
        assert settings.provider_base_url == "http://127.0.0.1:8100"
        assert os.environ["INGRAM_CLIENT_ID"] == "sandbox-client"
        # The sandbox accepts exactly the credentials the worker was given.
        sandbox = next(s for s in services(1) if s.name == "sandbox")
        assert sandbox.env["SANDBOX_XVANTAGE_CLIENT_ID"] == "sandbox-client"
        assert sandbox.env["SANDBOX_XVANTAGE_CLIENT_SECRET"] == "sandbox-secret"
        assert "--xvantage-order-delay" in sandbox.argv
        workers = [s for s in services(1) if s.name.startswith("worker")]
        assert workers and all(s.argv[-1].endswith("worker.py") for s in workers)
    finally:
        get_settings.cache_clear()


def test_what_the_developer_set_wins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from devstack import local_provider_env

    environ = {"PROVIDER": "ingram", "INGRAM_CLIENT_ID": "mine", "PROVIDER_BASE_URL": "http://x"}
    assert local_provider_env(environ) == {
        "INGRAM_CLIENT_SECRET": "sandbox-secret",
        "INGRAM_CUSTOMER_NUMBER": "20-222222",
    }
    assert local_provider_env({}) == {"PROVIDER_BASE_URL": "http://127.0.0.1:8100"}


def test_partner_center_without_a_token_starts_nothing_and_names_it(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    from csp_core.settings import get_settings
    from devstack import main

    forget(monkeypatch, "PROVIDER_BASE_URL", "PROVIDER_API_KEY")
    monkeypatch.setenv("PROVIDER", "partner_center")
    try:
        assert main([]) == 2
    finally:
        get_settings.cache_clear()


def test_the_stack_supervises_the_http_api_on_its_port_and_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.chdir(tmp_path)  # the stack's .data/ goes here
    monkeypatch.setenv("API_PORT", str(port))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'csp.db'}")
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nobody: never needed
    get_settings.cache_clear()
    try:
        ports = Ports.from_settings()
        [api] = [service for service in services(1, ports) if service.name == "api"]
        shown = banner(1, ports)
    finally:
        get_settings.cache_clear()
    assert api.port == port
    assert api.argv[1:] == ["-m", "http_api", "--host", "127.0.0.1", "--port", str(port)]
    assert f"  HTTP API      http://127.0.0.1:{port}  (OpenAPI: /docs; keys: csp apikey" in shown

    supervisor = Supervisor([], lambda line: None)
    supervisor.start(api)
    try:
        api.wait_ready(60)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=10)
        keyless = httpx.get(f"http://127.0.0.1:{port}/v1/licenses", timeout=10)
    finally:
        supervisor.stop_all()
    assert health.json() == {"status": "ok"} and docs.status_code == 200
    assert keyless.status_code == 401 and keyless.json()["type"].endswith("/unauthorized")
    assert api.exit_code() is not None
    assert "request refused" in (tmp_path / ".data" / "logs" / "api.log").read_text()
