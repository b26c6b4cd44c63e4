"""`make run`: the whole local stack in the foreground.

Temporal dev server (state in .data/temporal/, Web UI on :8233, contract search attributes
registered), the Partner Center sandbox (:8100), the SMTP sink (:1025 → .data/outbox/) and the
worker. Ctrl-C stops all of it; running it again resumes the workflows that were in flight.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from csp_core.settings import DATA_DIR, get_settings
from temporalutil.search_attributes import dev_server_args

BIN = Path(sys.executable).parent
TEMPORAL_PORT, UI_PORT, SANDBOX_PORT, SMTP_PORT = 7233, 8233, 8100, 1025


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None = None
    log_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self.port is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not open port {self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def services() -> list[Service]:
    settings = get_settings()
    logs = DATA_DIR / "logs"
    for folder in (DATA_DIR / "temporal", DATA_DIR / "outbox", DATA_DIR / "sandbox", logs):
        folder.mkdir(parents=True, exist_ok=True)
    temporal = [
        str(BIN / "temporal"), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(TEMPORAL_PORT), "--ui-port", str(UI_PORT),
        "--namespace", settings.temporal_namespace,
        "--db-filename", str(DATA_DIR / "temporal" / "temporal.db"),
        # WAL: same durability for a dev box, ~2.5x the throughput of the default journal.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--log-level", "warn",
        *dev_server_args(),
    ]  # fmt: skip
    codec: list[Service] = []
    if settings.payload_encryption_keys:  # the Web UI decodes through our codec server
        temporal += ["--ui-codec-endpoint", f"http://127.0.0.1:{settings.codec_server_port}"]
        codec.append(
            Service(
                "codec-server",
                [str(BIN / "csp"), "codec", "serve", "--port", str(settings.codec_server_port)],
                settings.codec_server_port,
                logs / "codec-server.log",
            )
        )
    return [
        *codec,
        Service("temporal", temporal, TEMPORAL_PORT, logs / "temporal.log"),
        Service(
            "sandbox",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(SANDBOX_PORT),
                "--state-file",
                str(DATA_DIR / "sandbox" / "state.json"),
                "--provisioning-delay",
                os.environ.get("SANDBOX_PROVISIONING_DELAY", "5"),
            ],  # fmt: skip
            SANDBOX_PORT,
            logs / "sandbox.log",
        ),
        Service(
            "smtp-sink",
            [
                sys.executable,
                "-m",
                "sandbox.smtp_sink",
                "--port",
                str(SMTP_PORT),
                "--outbox",
                str(DATA_DIR / "outbox"),
            ],  # fmt: skip
            SMTP_PORT,
            logs / "smtp-sink.log",
        ),
        Service("worker", [sys.executable, "worker.py"]),
    ]


def banner() -> str:
    settings = get_settings()
    return "\n".join(
        [
            "csp-orchestrator local stack is up:",
            f"  Temporal      {settings.temporal_address}"
            f"  (namespace {settings.temporal_namespace})",
            f"  Web UI        http://localhost:{UI_PORT}",
            f"  Sandbox       http://127.0.0.1:{SANDBOX_PORT}  (counts: /sandbox/stats)",
            f"  SMTP sink     127.0.0.1:{SMTP_PORT}  → {DATA_DIR / 'outbox'}/",
            f"  Database      {settings.database_url}",
            f"  Worker        task queue {settings.task_queue}",
            "  Payloads      "
            + (
                f"encrypted; Web UI decodes via http://127.0.0.1:{settings.codec_server_port}"
                if settings.payload_encryption_keys
                else "plain JSON (set PAYLOAD_ENCRYPTION_KEYS to encrypt)"
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


def main() -> int:
    stack = services()
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
    started: list[Service] = []
    code = 0
    try:
        for service in stack:
            service.start()
            started.append(service)
            service.wait_ready()
        print(f"renewal schedule: {ensure_renewal_schedule()}", flush=True)
        print(banner(), flush=True)
        while not stopping:
            for service in started:
                if service.process and service.process.poll() is not None:
                    print(
                        f"{service.name} exited ({service.process.returncode}); stopping",
                        file=sys.stderr,
                    )
                    stopping, code = True, 1
            time.sleep(0.5)
    except RuntimeError as err:
        print(f"stack failed to start: {err}", file=sys.stderr)
        code = 1
    finally:
        print("stopping the stack...", flush=True)
        for service in reversed(started):
            service.stop()
        print("stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
