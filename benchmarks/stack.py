"""The local stack the benchmarks run on: a real Temporal dev server, the Partner Center sandbox,
an SMTP sink and ONE worker process, plus the CPU and memory readings they report.

- `start_dev_server(folder)`: the dev server with the contract's search attributes, its SQLite
  file (with the dev stack's WAL pragmas) in `folder` (a temporary directory: nothing is left
  behind when the benchmark ends);
- `sandbox_server(seed)`: the sandbox app in a background thread, `seed` applied to its state
  first (the sandbox has no control endpoint for everything a benchmark needs to set up);
- `WorkerProcess(serve, config)`: a spawned process running `serve(config, conn)`, which starts
  its workers and then calls `answer_driver(conn)`; the driver reads the process's usage (peak
  RSS and CPU, from getrusage) while it runs and once it has stopped;
- `dev_server_pid()`, `process_cpu_seconds(pid)`, `process_peak_rss_mib(pid)`,
  `own_cpu_seconds()`: /proc readings (Linux) to split the cost between server, worker and
  driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.testing import WorkflowEnvironment

from sandbox.app import create_app
from sandbox.state import SandboxState
from temporalutil import event_loop
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from temporalutil.dev_server import SQLITE_PRAGMAS, dynamic_config_args
from temporalutil.logging import configure_logging

TEMPORAL_CLI = Path(sys.executable).parent / "temporal"
TOKEN = "bench-token"

Usage = dict[str, float]


# ---------------------------------------------------------------------------------------------
# The Temporal dev server.


async def start_dev_server(folder: Path) -> WorkflowEnvironment:
    """A dev server with the contract's search attributes, its database in `folder`.

    Use it as `async with await start_dev_server(tmp) as env:`; leaving stops the server.
    """
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_database_filename=str(folder / "temporal.db"),
        # The dev stack's dynamic config (its search attributes come from search_attributes=).
        dev_server_extra_args=[*SQLITE_PRAGMAS, *dynamic_config_args()],
        dev_server_log_level="error",
        search_attributes=sa.ALL,
        data_converter=DATA_CONVERTER,
    )


# ---------------------------------------------------------------------------------------------
# The worker process.


def usage() -> Usage:
    """This process's peak RSS (MiB) and CPU seconds so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"maxrss_mib": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime}


async def answer_driver(conn: Connection) -> None:
    """Called by `serve` once its workers run: reports "ready", then answers "usage" until the
    driver says "stop" (or goes away). `serve` returns after this, stopping its workers."""
    conn.send(("ready", usage()))
    while True:
        try:
            message = await asyncio.to_thread(conn.recv)
        except EOFError:  # the driver went away
            break
        if message != "usage":
            break
        conn.send(("usage", usage()))


def _worker_main(
    serve: Callable[[Any, Connection], Awaitable[None]], config: Any, conn: Connection
) -> None:
    """Entry point of the spawned worker process."""
    configure_logging("WARNING")
    event_loop.run(serve(config, conn))  # the production worker's loop
    with contextlib.suppress(OSError):  # the driver may have gone away
        conn.send(("stopped", usage()))
    gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit


class WorkerProcess:
    """A spawned worker (spawn, not fork: the parent already runs Temporal's native runtime).

    `serve` must be a module-level coroutine function (it is pickled by name); it connects,
    starts its workers, awaits `answer_driver(conn)` and returns.
    """

    def __init__(
        self,
        serve: Callable[[Any, Connection], Awaitable[None]],
        config: Any,
        name: str = "bench-worker",
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._exchanging = threading.Lock()
        self.process = context.Process(
            target=_worker_main, args=(serve, config, child), name=name, daemon=True
        )

    def _exchange(self, message: str | None, expected: str, wait_s: float) -> Usage:
        """Send `message` (if any) and receive its answer, one exchange at a time: callers may
        overlap (a progress line while waiting for idle), and one cancelled while its thread
        waits must not leave its answer for the next caller."""
        with self._exchanging:
            if message is not None:
                self._conn.send(message)
            if not self._conn.poll(wait_s):
                raise RuntimeError(f"worker process: no {expected!r} within {wait_s:.0f}s")
            kind, answer = self._conn.recv()
        if kind != expected:
            raise RuntimeError(f"worker process answered {kind!r}, expected {expected!r}")
        return answer

    async def start(self) -> Usage:
        self.process.start()
        return await asyncio.to_thread(self._exchange, None, "ready", 60)

    async def usage(self) -> Usage:
        return await asyncio.to_thread(self._exchange, "usage", "usage", 10)

    async def stop(self) -> Usage | None:
        final = None
        if self.process.is_alive():
            with contextlib.suppress(OSError, RuntimeError):  # gone already: joined below
                final = await asyncio.to_thread(self._exchange, "stop", "stopped", 30)
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5)
        return final


# ---------------------------------------------------------------------------------------------
# The Partner Center sandbox.


@contextmanager
def sandbox_server(
    seed: Callable[[SandboxState], None] | None = None,
) -> Iterator[tuple[str, SandboxState]]:
    """Like sandbox.serve_in_background (no provisioning delay), keeping the app's state to
    `seed` it before serving. Yields the base URL and the state."""
    app = create_app(provisioning_delay_seconds=0.0, token=TOKEN)
    state: SandboxState = app.state.sandbox
    if seed is not None:
        seed(state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# ---------------------------------------------------------------------------------------------
# CPU and memory, read from /proc (Linux), to split the cost between server, worker and driver.


def dev_server_pid() -> int | None:
    """The pid of the dev server this process started (`temporal server start-dev`)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if fields[1] == me and b"start-dev" in cmdline:
            return int(stat.parent.name)
    return None


def own_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def process_cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_rss_mib(pid: int | None) -> float | None:
    """A running process's peak resident set (VmHWM), MiB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_rss_mib(pid: int | None) -> float | None:
    """A running process's current resident set (VmRSS), MiB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


async def worker_idle(worker: WorkerProcess, idle_cpu_s: float = 0.05) -> None:
    """Until the worker has spent under `idle_cpu_s` of CPU in a second (its backlog is done)."""
    last = (await worker.usage())["cpu_s"]
    while True:
        await asyncio.sleep(1.0)
        now = (await worker.usage())["cpu_s"]
        if now - last < idle_cpu_s:
            return
        last = now
