"""`make run`: the whole local stack in the foreground, supervised.

Temporal dev server (state in .data/temporal/, Web UI on :8233, contract search attributes
registered), the Partner Center sandbox (:8100; SANDBOX_FAULTS and SANDBOX_PROVISIONING_DELAY
passed through), the SMTP sink (:1025 → .data/outbox/), WORKERS worker processes
(`make run WORKERS=2`) and the HTTP API (127.0.0.1:8000, `python -m http_api`). A service
that dies is restarted with backoff (1 s, 2 s, 4 s … 30 s; back to 1 s once it has stayed up a
minute) and the log says so. Ctrl-C stops all of it, also during a backoff wait; running it
again resumes the workflows that were in flight.

PROVIDER picks the worker's adapter, always against the local sandbox: `sandbox` (its Partner
Center face) or `ingram` (its Xvantage face, with the sandbox's client credentials unless
INGRAM_* are set). `partner_center` is for a real Partner Center and needs its PARTNER_CENTER_*
sign-in settings: without them nothing starts and the message names them.

Ports follow the settings the other parts read (TEMPORAL_ADDRESS, PROVIDER_BASE_URL, SMTP_PORT,
CODEC_SERVER_PORT, API_HOST/API_PORT; TEMPORAL_UI_PORT for the Web UI), so a second stack (the
chaos benchmark) can run on its own ports; data lives under .data/ of the current directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pydantic

from csp_core.settings import DATA_DIR, SANDBOX_BASE_URL, get_settings
from temporalutil.dev_server import SQLITE_PRAGMAS, dev_server_args

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent
BACKOFF_FIRST_S, BACKOFF_CAP_S, STABLE_AFTER_S = 1.0, 30.0, 60.0
# What the worker uses for PROVIDER=ingram against the sandbox's Xvantage face (the sandbox is
# started with the same client credentials).
SANDBOX_INGRAM = {
    "INGRAM_CLIENT_ID": "sandbox-client",
    "INGRAM_CLIENT_SECRET": "sandbox-secret",
    "INGRAM_CUSTOMER_NUMBER": "20-222222",
}


def local_provider_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings the worker needs to use the local sandbox as the chosen PROVIDER, for the
    ones that are unset (what the developer set wins). partner_center gets none: it is meant
    for a real Partner Center, so its token must be given."""
    provider = (environ.get("PROVIDER") or "sandbox").strip().lower()
    wanted = {"PROVIDER_BASE_URL": SANDBOX_BASE_URL}
    if provider == "ingram":
        wanted |= SANDBOX_INGRAM
    if provider == "partner_center":
        wanted = {}
    return {name: value for name, value in wanted.items() if not environ.get(name)}


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None = None
    log_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    # Supervision: when it last started, how many quick deaths in a row, when to start again.
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
        finally:
            if out:
                out.close()  # the child holds its own descriptor
        self.restart_at = None

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    def wait_ready(
        self, timeout: float = 60.0, cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        if self.port is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cancelled():
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        if cancelled():
            return
        raise RuntimeError(f"{self.name} did not open port {self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        self.restart_at = None
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Supervisor:
    """Restarts services that exit, with exponential backoff, and says so on `log`.

    `check()` is one supervision step (cheap; call it a few times a second); `stop_all()` stops
    the services in reverse order. The clock is injectable so backoff can be tested.
    """

    def __init__(
        self,
        services: list[Service],
        log: Callable[[str], None] = lambda line: print(line, flush=True),
        *,
        first_delay_s: float = BACKOFF_FIRST_S,
        cap_s: float = BACKOFF_CAP_S,
        stable_after_s: float = STABLE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.log = log
        self.first_delay_s = first_delay_s
        self.cap_s = cap_s
        self.stable_after_s = stable_after_s
        self.clock = clock
        self.stopping = False

    def delay_for(self, service: Service) -> float:
        return min(self.cap_s, self.first_delay_s * 2**service.failures)

    def check(self) -> None:
        if self.stopping:  # stopping: exits are expected, and nothing starts again
            return
        now = self.clock()
        for service in self.services:
            if service.restart_at is not None:
                if now >= service.restart_at:
                    self.start(service)
                    pid = service.process.pid if service.process else "?"
                    self.log(f"{service.name} restarted (pid {pid})")
                continue
            code = service.exit_code()
            if code is None:
                continue
            if now - service.started_at >= self.stable_after_s:
                service.failures = 0  # it had been up a while: a fresh incident
            delay = self.delay_for(service)
            service.failures += 1
            service.restart_at = now + delay
            self.log(f"{service.name} exited ({code}); restarting in {delay:g} s")

    def start(self, service: Service) -> None:
        """Start `service` under supervision (its uptime measured on this clock)."""
        service.start()
        service.started_at = self.clock()
        if service not in self.services:
            self.services.append(service)

    def stop_all(self) -> None:
        self.stopping = True
        for service in reversed(self.services):
            service.stop()


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Ports:
    temporal: int
    ui: int
    sandbox: int
    smtp: int
    codec: int
    api: int

    @classmethod
    def from_settings(cls) -> Ports:
        settings = get_settings()
        return cls(
            temporal=urlsplit(f"//{settings.temporal_address}").port or 7233,
            ui=int(os.environ.get("TEMPORAL_UI_PORT", "8233")),
            sandbox=urlsplit(settings.provider_base_url or SANDBOX_BASE_URL).port or 8100,
            smtp=settings.smtp_port,
            codec=settings.codec_server_port,
            api=settings.api_port,
        )


def services(workers: int = 1, ports: Ports | None = None) -> list[Service]:
    settings = get_settings()
    ports = ports or Ports.from_settings()
    logs = DATA_DIR / "logs"
    for folder in (DATA_DIR / "temporal", DATA_DIR / "outbox", DATA_DIR / "sandbox", logs):
        folder.mkdir(parents=True, exist_ok=True)
    temporal = [
        str(BIN / "temporal"), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(ports.temporal), "--ui-port", str(ports.ui),
        "--namespace", settings.temporal_namespace,
        "--db-filename", str(DATA_DIR / "temporal" / "temporal.db"),
        *SQLITE_PRAGMAS,
        "--log-level", "warn",
        *dev_server_args(),
    ]  # fmt: skip
    codec: list[Service] = []
    if settings.payload_encryption_keys:  # the Web UI decodes through our codec server
        temporal += ["--ui-codec-endpoint", f"http://127.0.0.1:{ports.codec}"]
        codec.append(
            Service(
                "codec-server",
                [str(BIN / "csp"), "codec", "serve", "--port", str(ports.codec)],
                ports.codec,
                logs / "codec-server.log",
            )
        )
    return [
        *codec,
        Service("temporal", temporal, ports.temporal, logs / "temporal.log"),
        Service(
            "sandbox",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.sandbox),
                "--state-file",
                str(DATA_DIR / "sandbox" / "state.json"),
                "--provisioning-delay",
                os.environ.get("SANDBOX_PROVISIONING_DELAY", "5"),
                # Ingram's v7 orders are asynchronous: processed this long after submission.
                "--xvantage-order-delay",
                os.environ.get("SANDBOX_XVANTAGE_ORDER_DELAY", "2"),
            ],  # fmt: skip
            ports.sandbox,
            logs / "sandbox.log",
            env={**sandbox_env(), **sandbox_events_env(ports)},
        ),
        Service(
            "smtp-sink",
            [
                sys.executable,
                "-m",
                "sandbox.smtp_sink",
                "--port",
                str(ports.smtp),
                "--outbox",
                str(DATA_DIR / "outbox"),
            ],  # fmt: skip
            ports.smtp,
            logs / "smtp-sink.log",
        ),
        *(
            Service(
                f"worker-{n}",
                [sys.executable, str(ROOT / "worker.py")],
                # Its /metrics port, one per worker (9464, 9465, ...): also its readiness.
                metrics_port(settings.metrics_address, n),
                env=worker_metrics_env(settings.metrics_address, n),
            )
            for n in range(1, workers + 1)
        ),
        Service(
            "api",
            [
                sys.executable,
                "-m",
                "http_api",
                "--host",
                settings.api_host,
                "--port",
                str(ports.api),
            ],
            ports.api,
            logs / "api.log",
            env=api_webhooks_env(ports),
        ),
    ]


def metrics_port(address: str | None, worker: int) -> int | None:
    return None if address is None else int(address.rpartition(":")[2]) + worker - 1


def worker_metrics_env(address: str | None, worker: int) -> dict[str, str]:
    if address is None:
        return {}
    return {"METRICS_ADDRESS": f"{address.rpartition(':')[0]}:{metrics_port(address, worker)}"}


def sandbox_env() -> dict[str, str]:
    """The sandbox accepts the credentials the worker was given (PROVIDER_API_KEY for its
    Partner Center face, INGRAM_CLIENT_ID/SECRET for its Xvantage face)."""
    settings = get_settings()
    env = {}
    if settings.provider_api_key is not None:
        env["SANDBOX_TOKEN"] = settings.provider_api_key.get_secret_value()
    if settings.ingram_client_id and settings.ingram_client_secret:
        env["SANDBOX_XVANTAGE_CLIENT_ID"] = settings.ingram_client_id
        env["SANDBOX_XVANTAGE_CLIENT_SECRET"] = settings.ingram_client_secret.get_secret_value()
    return env


def webhook_secret() -> str:
    """Ingram's shared webhook secret for the local stack: INGRAM_WEBHOOK_SECRET when set,
    else one generated once into .data/webhook-secret (owner-only; never printed)."""
    given = get_settings().ingram_webhook_secret
    if given is not None and given.get_secret_value():
        return given.get_secret_value()
    path = DATA_DIR / "webhook-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def sandbox_events_env(ports: Ports) -> dict[str, str]:
    """The sandbox pushes its events to the local API's webhooks (SANDBOX_EVENTS_URL wins)."""
    api_host = get_settings().api_host
    url = os.environ.get("SANDBOX_EVENTS_URL") or f"http://{api_host}:{ports.api}/v1/webhooks"
    return {
        "SANDBOX_EVENTS_URL": url,
        "SANDBOX_EVENTS_SECRET": webhook_secret(),
        "SANDBOX_PUBLIC_URL": f"http://127.0.0.1:{ports.sandbox}",
    }


def api_webhooks_env(ports: Ports) -> dict[str, str]:
    """The API checks the sandbox's events: the same secret, and its certificate host."""
    hosts = [*get_settings().partner_center_webhook_cert_hosts, f"127.0.0.1:{ports.sandbox}"]
    return {
        "INGRAM_WEBHOOK_SECRET": webhook_secret(),
        "PARTNER_CENTER_WEBHOOK_CERT_HOSTS": ",".join(dict.fromkeys(hosts)),
    }


def prepare_environment() -> str | None:
    """Point the chosen PROVIDER at the local sandbox and check the settings the workers will
    read; the refusal, naming what is missing, when they cannot start."""
    os.environ.update(local_provider_env(os.environ))
    get_settings.cache_clear()
    try:
        get_settings()
    except pydantic.ValidationError as err:
        return "; ".join(str(e["msg"]) for e in err.errors())
    return None


def banner(workers: int, ports: Ports) -> str:
    settings = get_settings()
    return "\n".join(
        [
            "csp-orchestrator local stack is up:",
            f"  Temporal      {settings.temporal_address}"
            f"  (namespace {settings.temporal_namespace})",
            f"  Web UI        http://localhost:{ports.ui}",
            f"  Sandbox       http://127.0.0.1:{ports.sandbox}  (counts: /sandbox/stats)"
            f"  provider: {settings.provider.value}"
            + (f"  faults: {faults}" if (faults := os.environ.get("SANDBOX_FAULTS")) else ""),
            f"  SMTP sink     127.0.0.1:{ports.smtp}  → {DATA_DIR / 'outbox'}/",
            f"  Database      {settings.database_url}",
            f"  Workers       {workers} on task queue {settings.task_queue}"
            " (a service that dies is restarted)",
            f"  HTTP API      http://{settings.api_host}:{ports.api}  (OpenAPI: /docs; "
            "keys: csp apikey create --reseller <id> | --ops)",
            f"  Webhooks      the sandbox pushes its events to http://{settings.api_host}:"
            f"{ports.api}/v1/webhooks (signed; secret in {DATA_DIR / 'webhook-secret'})",
            "  Payloads      "
            + (
                f"encrypted; Web UI decodes via http://127.0.0.1:{settings.codec_server_port}"
                if settings.payload_encryption_keys
                else "plain JSON (set PAYLOAD_ENCRYPTION_KEYS to encrypt)"
            ),
            "  Metrics       "
            + (
                f"http://127.0.0.1:{metrics_port(settings.metrics_address, 1)}/metrics"
                + "".join(
                    f"  worker-{n} :{metrics_port(settings.metrics_address, n)}"
                    for n in range(2, workers + 1)
                )
                if settings.metrics_address
                else "off (METRICS_ADDRESS is empty)"
            ),
            f"  Logs          {DATA_DIR / 'logs'}/",
            "Try:  .venv/bin/csp order submit examples/order-create.json",
            "Ctrl-C stops everything; `make run` again resumes in-flight workflows.",
        ]
    )


def ensure_renewal_schedule() -> str:
    import asyncio
    import gc

    from api.renewals import SCHEDULE_ID, ensure_schedule
    from temporalutil.client import connect

    async def ensure() -> str:
        settings = get_settings()
        return await ensure_schedule(await connect(settings), settings)

    try:
        return f"{SCHEDULE_ID} {asyncio.run(ensure())}"
    finally:
        gc.collect()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="devstack.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: $WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        raw = os.environ.get("WORKERS", "").strip() or "1"
        if not raw.isdigit():
            parser.error(f"WORKERS must be a whole number from 1 to 16, got {raw!r}")
        args.workers = int(raw)
    if not 1 <= args.workers <= 16:
        parser.error(f"WORKERS must be a whole number from 1 to 16, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (refused := prepare_environment()) is not None:
        print(f"devstack: nothing started: {refused}", file=sys.stderr)
        return 2
    ports = Ports.from_settings()
    stack = services(args.workers, ports)
    busy = [s for s in stack if s.port and _port_busy(s.port)]
    if busy:
        names = ", ".join(f"{s.name} (:{s.port})" for s in busy)
        print(f"ports already in use: {names}. Is another stack running?", file=sys.stderr)
        return 1
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    # How long a service must stay up to count as healthy again (backoff back to 1 s). The chaos
    # benchmark lowers it: its kills are not a crash loop.
    stable_after = float(os.environ.get("DEVSTACK_STABLE_AFTER_S", STABLE_AFTER_S))
    supervisor = Supervisor([], stable_after_s=stable_after)
    code = 0
    try:
        for service in stack:
            if stopping:
                break
            supervisor.start(service)
            service.wait_ready(cancelled=lambda: stopping)
        if not stopping:
            print(f"renewal schedule: {ensure_renewal_schedule()}", flush=True)
            print(banner(args.workers, ports), flush=True)
        while not stopping:
            supervisor.check()
            time.sleep(0.2)
    except RuntimeError as err:
        print(f"stack failed to start: {err}", file=sys.stderr)
        code = 1
    finally:
        print("stopping the stack...", flush=True)
        supervisor.stop_all()
        print("stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
