"""`make chaos`: orders and a renewal cycle under chaos, on a stack of its own. Prints figures.

The stack is devstack.py itself (supervised services, two workers), started in a temporary
directory (its own .data: a developer's data is never touched) on free ports, with the sandbox's
random faults on (SANDBOX_FAULTS; default error_rate=0.2,throttle_rate=0.1,
lost_response_rate=0.05,latency_ms=200, seeded). Then:

1. N orders (a mix of create, link to a tenant already ours, and link with an invitation that
   the benchmark accepts with the partner_accepted signal) are submitted;
2. while a worker is SIGKILLed every few seconds (the stack restarts it) and the Temporal server
   is SIGKILLed once (restarted by the stack on its own database file);
3. once every order is final, the open period's renewal cycle runs and every charge is paid.

It prints orders by final stage, provider effects per order (from /sandbox/world), duplicates,
notices delivered / undeliverable / lost / duplicated (SMTP outbox by Message-ID and X-CSP-Key,
and the registry's e-mail ledger; a notice re-sent after a worker died between the mail server's
answer and the ledger's "sent" keeps its Message-ID, so it is counted apart as recognisable),
each created tenant's credentials revealable exactly once, the renewal outcome and the time
taken; and exits 1 when anything was lost or duplicated (2 on a bad option, 3 on its own
timeout). Its processes are always stopped (Ctrl-C and SIGTERM too).

    .venv/bin/python benchmarks/chaos.py --orders 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.smtp_sink import free_port, read_outbox  # noqa: E402

DEFAULT_FAULTS = "error_rate=0.2,throttle_rate=0.1,lost_response_rate=0.05,latency_ms=200"
TOKEN = "chaos-token"
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# The stack: devstack.py in a temporary directory, on free ports.


@dataclass
class ChaosStack:
    folder: Path
    faults: str
    seed: int
    workers: int
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    seen_children: dict[int, bytes] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.folder / ".data"

    @property
    def log_path(self) -> Path:
        return self.folder / "devstack.log"

    def environment(self) -> dict[str, str]:
        self.ports = {n: free_port() for n in ("temporal", "ui", "sandbox", "smtp", "codec", "api")}
        return {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.ports['temporal']}",
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_UI_PORT": str(self.ports["ui"]),
            "PROVIDER": "sandbox",
            "PROVIDER_BASE_URL": f"http://127.0.0.1:{self.ports['sandbox']}",
            "PROVIDER_API_KEY": TOKEN,
            "SANDBOX_TOKEN": TOKEN,
            "SANDBOX_FAULTS": self.faults,
            "SANDBOX_FAULTS_SEED": str(self.seed),
            "SANDBOX_PROVISIONING_DELAY": "2",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.ports["smtp"]),
            "CODEC_SERVER_PORT": str(self.ports["codec"]),
            "METRICS_ADDRESS": "",  # no /metrics: its ports would meet a running `make run`'s
            "API_PORT": str(self.ports["api"]),
            "PAYLOAD_ENCRYPTION_KEYS": "",
            "DATABASE_URL": f"sqlite:///{self.data / 'csp.db'}",
            "SECRETS_KEY_FILE": str(self.data / "secrets.key"),
            "LOG_LEVEL": "WARNING",
            "WORKERS": str(self.workers),
            # A worker that ran 3 s was healthy: our kills are not a crash loop to back off from.
            "DEVSTACK_STABLE_AFTER_S": "3",
        }

    def start(self, timeout: float = 180.0) -> None:
        env = self.environment()
        os.environ.update(env)  # this process's own clients (CLI API, registry) read the same
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "devstack.py"), "--workers", str(self.workers)],
            cwd=self.folder,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while "local stack is up" not in self.log_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited at start:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not come up within {timeout:.0f}s")
            time.sleep(0.3)
        self.children()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def children(self) -> dict[int, bytes]:
        """The stack's service processes now: pid -> command line (remembered for cleanup)."""
        found: dict[int, bytes] = {}
        if self.process is None:
            return found
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.process.pid:
                    found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
        self.seen_children.update(found)
        return found

    def pids(self, marker: bytes) -> list[int]:
        return [pid for pid, cmd in self.children().items() if marker in cmd]

    def stop(self) -> list[int]:
        """SIGINT the stack (it stops its services in order); then make sure nothing it
        started survives (killed by pid, only if its command line is still the one we saw).
        Returns the pids that had to be killed."""
        leftovers: list[int] = []
        if self.process is not None:
            self.children()
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        for pid, cmd in self.seen_children.items():
            try:
                if (Path(f"/proc/{pid}") / "cmdline").read_bytes() == cmd:
                    os.kill(pid, signal.SIGKILL)
                    leftovers.append(pid)
            except (OSError, ProcessLookupError):
                continue
        return leftovers


# ---------------------------------------------------------------------------------------------
# The workload.


def order_payload(n: int, run: str, mode: str, domain: str | None) -> dict[str, Any]:
    template = json.loads((ROOT / "examples" / "order-create.json").read_text())
    template["order_id"] = f"CHAOS-{run}-{n:05d}"
    template["reseller"]["id"] = f"RSL-{n % 7:03d}"
    template["items"][0]["quantity"] = 1 + n % 9
    if mode == "create":
        template["tenant"] = {"mode": "create", "domain_prefix": f"chaos{run}{n:05d}"}
    else:
        template["tenant"] = {"mode": "link", "domain": domain}
    return template


async def retrying(what: str, call: Callable[[], Awaitable[T]], give_up_s: float = 120) -> T:
    """Calls to Temporal during its restart fail for a few seconds: retry them."""
    from temporalio.service import RPCError

    deadline = time.monotonic() + give_up_s
    delay = 0.5
    while True:
        try:
            return await call()
        except (RPCError, RuntimeError, ConnectionError) as err:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: still failing after {give_up_s:.0f}s: {err}") from err
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


@dataclass
class Chaos:
    stack: ChaosStack
    kill_every_s: float
    temporal_restart_after_s: float
    rng: random.Random
    workers_killed: int = 0
    temporal_restarts: int = 0

    async def run(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(self.kill_every_s)
            if (
                self.temporal_restarts == 0
                and time.monotonic() - started >= self.temporal_restart_after_s
            ):
                for pid in self.stack.pids(b"start-dev"):
                    os.kill(pid, signal.SIGKILL)
                    self.temporal_restarts += 1
                    print(f"  chaos: Temporal server (pid {pid}) killed", flush=True)
                continue
            workers = self.stack.pids(b"worker.py")
            # Only while every worker is up: never the last one standing (the orders must move).
            if len(workers) >= self.stack.workers:
                os.kill(self.rng.choice(workers), signal.SIGKILL)
                self.workers_killed += 1


async def workload(stack: ChaosStack, args: argparse.Namespace) -> int:
    from api import orders as order_api
    from api import renewals as renewal_api
    from csp_core.orders.models import parse_order
    from csp_core.registry import Registry
    from csp_core.renewals.billing import open_period
    from csp_core.renewals.values import renewal_workflow_id
    from csp_core.secrets import SecretVault
    from csp_core.settings import get_settings
    from csp_core.stages import OrderStage
    from temporalutil.client import connect

    get_settings.cache_clear()
    settings = get_settings()
    began = time.monotonic()
    rng = random.Random(args.seed)
    run = datetime.now(UTC).strftime("%H%M%S")
    sandbox = httpx.AsyncClient(base_url=settings.provider_url, timeout=30)

    # The mix: half create, a quarter link-ours, a quarter link-invite (accepted by signal).
    modes = [("create", "link-ours", "create", "link-invite")[n % 4] for n in range(args.orders)]
    domains: dict[int, str | None] = {}
    for n, mode in enumerate(modes):
        if mode == "create":
            domains[n] = None
            continue
        domain = f"chaoslink{run}{n:05d}.onmicrosoft.com"
        relationship = "reseller" if mode == "link-ours" else "none"
        added = await sandbox.post(
            "/sandbox/customers", json={"domain": domain, "relationship": relationship}
        )
        added.raise_for_status()
        domains[n] = domain
    orders = [parse_order(order_payload(n, run, mode, domains[n])) for n, mode in enumerate(modes)]
    mode_of = {o.order_id: m for o, m in zip(orders, modes, strict=True)}

    client = await connect(settings)
    # The registry judges resubmits (the stack's worker created and migrated it already).
    submit_registry = Registry.from_url(settings.database_url, migrate=False)
    chaos = Chaos(stack, args.kill_every, args.temporal_restart_after, rng)
    chaos_task = asyncio.create_task(chaos.run())
    print(f"submitting {len(orders)} orders ({Counter(modes)})", flush=True)
    semaphore = asyncio.Semaphore(8)

    async def submit(order: Any) -> None:
        async with semaphore:
            await retrying(
                f"submit {order.order_id}",
                lambda: order_api.submit_order(client, submit_registry, order, settings),
            )

    await asyncio.gather(*(submit(o) for o in orders))
    submitted_s = time.monotonic() - began
    print(f"submitted in {submitted_s:.1f}s; waiting for final stages", flush=True)

    stages: dict[str, str] = {}
    accepted: set[str] = set()

    async def stage_of(order_id: str) -> str:
        description = await order_api.order_handle(client, order_id).describe()
        values = description.typed_search_attributes
        for pair in values:
            if pair.key.name == "OrderStage":
                return str(pair.value)
        return "RECEIVED"

    while True:
        pending = [
            o.order_id
            for o in orders
            if not OrderStage(stages.get(o.order_id, "RECEIVED")).is_final
        ]
        if not pending:
            break
        for order_id in pending:
            async with semaphore:
                try:
                    stages[order_id] = await stage_of(order_id)
                except Exception:  # noqa: BLE001 - Temporal restarting: look again later
                    continue
            if (
                mode_of[order_id] == "link-invite"
                and stages[order_id] == OrderStage.AWAITING_PARTNER_ACCEPTANCE
                and order_id not in accepted
            ):
                order = next(o for o in orders if o.order_id == order_id)
                await sandbox.post(f"/sandbox/customers/{order.tenant.domain}/accept")
                with contextlib.suppress(Exception):
                    await order_api.accept_partner(client, order_id, "chaos benchmark")
                    accepted.add(order_id)
        await asyncio.sleep(1)
    orders_s = time.monotonic() - began
    print(f"every order final after {orders_s:.1f}s", flush=True)

    # The renewal cycle of the open period, every charge paid, chaos still on.
    registry = Registry.from_url(settings.database_url)
    period = open_period(datetime.now(UTC), renewal_api.renewal_policy(settings))
    handle = await retrying(
        "renewal cycle", lambda: renewal_api.run_period(client, period, settings)
    )
    cycle = await retrying("renewal cycle result", lambda: renewal_api.cycle_result(handle), 600)
    charges = registry.list_charges(period=period)
    for charge in charges:
        await retrying(
            f"payment {charge.subscription_id}",
            lambda c=charge: renewal_api.record_payment(
                client, registry, c.subscription_id, period, f"SPEI-CHAOS-{c.id}"
            ),
        )
    renewal_status: Counter[str] = Counter()
    for charge in charges:
        wf = client.get_workflow_handle(renewal_workflow_id(charge.subscription_id, period))
        for _ in range(300):
            try:
                description = await wf.describe()
            except Exception:  # noqa: BLE001
                await asyncio.sleep(1)
                continue
            if description.close_time is not None:
                break
            await asyncio.sleep(1)
        renewal_status[registry.get_charge(charge.subscription_id, period).status.value] += 1
    chaos_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await chaos_task
    total_s = time.monotonic() - began

    # -- figures --------------------------------------------------------------------------------
    problems: list[str] = []
    world = (await sandbox.get("/sandbox/world")).json()
    stats = world["stats"]
    by_stage = Counter(stages.values())
    print("\n== chaos benchmark ==")
    print(
        f"orders {len(orders)} ({', '.join(f'{k} {v}' for k, v in sorted(Counter(modes).items()))})"
    )
    print(f"faults SANDBOX_FAULTS={stack.faults} seed={args.seed}")
    print(
        f"chaos  workers killed {chaos.workers_killed} (every {args.kill_every:g}s), "
        f"Temporal restarts {chaos.temporal_restarts}; "
        f"stack restarts logged {stack.log_text().count(' restarted (pid')}"
    )
    print("final stages: " + ", ".join(f"{k} {v}" for k, v in sorted(by_stage.items())))
    not_active = {o: s for o, s in stages.items() if s != OrderStage.ACTIVE}
    if not_active:
        problems.append(
            f"{len(not_active)} order(s) not ACTIVE: {dict(list(not_active.items())[:5])}"
        )

    customers_by_domain = Counter(c["domain"] for c in world["customers"] if c["origin"] == "api")
    orders_by_domain = Counter(o["domain"] for o in world["orders"])
    create_domains = {
        o.order_id: f"{o.tenant.domain_prefix}.onmicrosoft.com"
        for o in orders
        if mode_of[o.order_id] == "create"
    }
    all_domains = {o.order_id: create_domains.get(o.order_id) or o.tenant.domain for o in orders}
    wrong_customers = {
        d: customers_by_domain[d] for d in create_domains.values() if customers_by_domain[d] != 1
    }
    stray_customers = set(customers_by_domain) - set(create_domains.values())
    wrong_orders = {
        oid: orders_by_domain[d]
        for oid, d in all_domains.items()
        if orders_by_domain[d] != (1 if stages.get(oid) == OrderStage.ACTIVE else 0)
    }
    per_tenant = dict(Counter(customers_by_domain[d] for d in create_domains.values()))
    print(
        f"provider customers created {stats['customers_created']} for {len(create_domains)} "
        f"create orders; per created tenant: {per_tenant}"
    )
    print(
        f"provider orders {stats['orders_created']} for {len(orders)} orders; per order: "
        f"{dict(Counter(orders_by_domain[d] for d in all_domains.values()))}; "
        f"duplicate placements {stats['duplicate_orders']}"
    )
    print(
        f"provider faults served {stats['faults_served']} (error {stats['faults_served_error']}, "
        f"throttle {stats['faults_served_throttle']}, lost response "
        f"{stats['faults_served_lost_response']}); replays {stats['requests_replayed']}"
    )
    if wrong_customers:
        problems.append(
            f"tenants without exactly one customer: {dict(list(wrong_customers.items())[:5])}"
        )
    if stray_customers:
        problems.append(f"customers created for no order: {sorted(stray_customers)[:5]}")
    if wrong_orders:
        problems.append(
            f"orders without exactly one provider order: {dict(list(wrong_orders.items())[:5])}"
        )
    if stats["duplicate_orders"]:
        problems.append(f"{stats['duplicate_orders']} duplicate provider order(s)")

    # Notices: the outbox against the ledger.
    deliveries = [(p, m) for p, m in read_outbox(stack.data / "outbox")]
    by_message_id = Counter(str(m["Message-ID"]).strip() for _, m in deliveries if m["Message-ID"])
    by_key = Counter(str(m["X-CSP-Key"]) for _, m in deliveries if m["X-CSP-Key"])
    # At least once: a worker killed between the mail server's "250 OK" and the ledger's "sent"
    # sends the notice again, with the same Message-ID (recognisable, by design). A notice that
    # reached the outbox under two Message-IDs would be a real duplicate.
    resent = {k: n for k, n in by_message_id.items() if n > 1}
    ids_of_key: dict[str, set[str]] = {}
    for _, m in deliveries:
        if m["X-CSP-Key"] and m["Message-ID"]:
            ids_of_key.setdefault(str(m["X-CSP-Key"]), set()).add(str(m["Message-ID"]).strip())
    duplicated = {k: len(ids) for k, ids in ids_of_key.items() if len(ids) > 1}
    ledger = ledger_rows(settings.database_url)
    undeliverable = [r for r in ledger if str(r.get("status", "")).lower() == "undeliverable"]
    missing = [
        r["key"]
        for r in ledger
        if r["key"] not in by_key and str(r.get("status", "sent")).lower() != "undeliverable"
    ]
    silent_orders = [o.order_id for o in orders if not any(o.order_id in k for k in by_key)]
    print(
        f"notices delivered {len(deliveries)} (distinct Message-IDs {len(by_message_id)}), "
        f"re-sent after a crash with the same Message-ID {sum(n - 1 for n in resent.values())}, "
        f"duplicated under another Message-ID {len(duplicated)}, ledger {len(ledger)}, "
        f"undeliverable {len(undeliverable)}, lost (in ledger, never delivered) {len(missing)}, "
        f"orders with no notice {len(silent_orders)}"
    )
    if duplicated:
        problems.append(f"duplicated notices: {dict(list(duplicated.items())[:5])}")
    if missing:
        problems.append(f"notices recorded but never delivered: {missing[:5]}")
    if silent_orders:
        problems.append(f"orders whose reseller got no notice: {silent_orders[:5]}")

    # Credentials: each created tenant's revealable exactly once.
    vault = SecretVault.from_settings(settings)
    reveal: Counter[tuple[str, str]] = Counter()
    for order_id in create_domains:
        if stages.get(order_id) != OrderStage.ACTIVE:
            continue
        first = second = "ok"
        try:
            registry.reveal_credentials(order_id, vault)
        except Exception as err:  # noqa: BLE001
            first = type(err).__name__
        try:
            registry.reveal_credentials(order_id, vault)
        except Exception as err:  # noqa: BLE001
            second = type(err).__name__
        reveal[(first, second)] += 1
    print(f"credentials (first reveal, second reveal): {dict(reveal)}")
    bad_reveals = sum(
        n for (a, b), n in reveal.items() if a != "ok" or b != "CredentialsAlreadyRevealed"
    )
    if bad_reveals:
        problems.append(
            f"{bad_reveals} created tenant(s) whose credentials were not revealable once"
        )

    print(
        f"renewals {period}: cycle prepared {cycle.charges_prepared}, started "
        f"{cycle.renewals_started}; charges {len(charges)} → {dict(renewal_status)}; "
        f"provider suspensions {stats['subscriptions_suspended']}, "
        f"reactivations {stats['subscriptions_reactivated']}"
    )
    if set(renewal_status) - {"PAID"}:
        problems.append(f"renewal charges not PAID: {dict(renewal_status)}")
    if not charges:
        problems.append("the renewal cycle found no charge to collect")
    print(f"time: submitted {submitted_s:.1f}s, orders final {orders_s:.1f}s, total {total_s:.1f}s")
    registry.dispose()
    await sandbox.aclose()
    if problems:
        print("\nLOST OR DUPLICATED:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("\nnothing lost, nothing duplicated")
    return 0


def ledger_rows(database_url: str) -> list[dict[str, Any]]:
    """The e-mail ledger as rows (read generically: its columns may grow, e.g. a status)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text("SELECT * FROM notifications")).mappings()]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/chaos.py", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=200, help="orders to submit (default 200)")
    parser.add_argument("--faults", default=os.environ.get("SANDBOX_FAULTS") or DEFAULT_FAULTS)
    parser.add_argument("--seed", type=int, default=7, help="fault and chaos RNG seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument(
        "--temporal-restart-after", type=float, default=20.0, help="seconds before the restart"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.kill_every <= 0:
        parser.error("--kill-every must be > 0")
    from sandbox.state import FaultProfile, FaultSpecError

    try:
        FaultProfile.parse(args.faults)
    except FaultSpecError as err:
        parser.error(str(err))
    return args


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="csp-chaos-"))
    stack = ChaosStack(folder, args.faults, args.seed, args.workers)
    code = 1
    with terminated_as_interrupt():
        try:
            print(f"starting the stack in {folder} ({args.workers} workers)", flush=True)
            stack.start()
            print(f"stack up on ports {stack.ports}", flush=True)
            code = asyncio.run(asyncio.wait_for(workload(stack, args), args.timeout))
        except TimeoutError:
            print(f"\nTIMEOUT after {args.timeout:.0f}s: orders did not all finish", flush=True)
            code = 3
        except KeyboardInterrupt:
            print("\ninterrupted", flush=True)
            code = 130
        finally:
            print("stopping the stack...", flush=True)
            leftovers = stack.stop()
            if leftovers:
                print(f"killed leftover processes {leftovers}", flush=True)
            if args.keep:
                print(f"data kept in {folder}")
            else:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            gc.collect()
    return code


if __name__ == "__main__":
    sys.exit(main())
