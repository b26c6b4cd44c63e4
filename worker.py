"""Runs the csp-orchestrator worker: `python worker.py` (the dev stack starts it for you).

Wires the real clients from settings into the activity classes and serves the task queue until
SIGINT/SIGTERM, letting in-flight activities finish.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta

import pydantic
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.adoption import AdoptionActivities
from activities.ops import OpsActivities
from activities.order_steps import OrderSteps
from activities.renewal import RenewalActivities
from activities.subscription import SubscriptionActivities
from csp_core.notifications.mailer import Mailer, SmtpMailer
from csp_core.providers.factory import build_provider
from csp_core.providers.metered import MeteredProvider
from csp_core.providers.port import Provider
from csp_core.registry import Registry
from csp_core.renewals.billing import DEFAULT_CUTOFF_DAY
from csp_core.renewals.values import renewal_cycle_queue
from csp_core.secrets import SecretVault
from csp_core.settings import Settings, get_settings
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE
from temporalutil import event_loop
from temporalutil.client import connect
from temporalutil.logging import configure_logging
from temporalutil.metrics import ProcessMetrics
from temporalutil.sandbox import workflow_runner
from workflows.adoption import SubscriptionAdoptionWorkflow
from workflows.order import LicenseOrderWorkflow
from workflows.renewal import RenewalPaymentWorkflow
from workflows.renewal_cycle import RenewalCycleWorkflow
from workflows.subscription import SubscriptionWorkflow

log = structlog.get_logger("worker")
# Workflows kept in memory between their tasks (the sticky cache). Most of ours wait for days
# (renewals, orders awaiting acceptance, every license's subscription): one evicted costs
# nothing while it waits and is replayed from its short history when its timer or signal comes.
# Each cached one costs ~0.2 MiB (benchmarks/waiting.py: 500 cached took a ~180 MiB worker to
# 290 MiB), so this bounds the worker's memory: ~225 MiB whatever the number waiting. 200 still
# holds every order of a burst of 50 in flight between its steps (benchmarks/orders.py).
MAX_CACHED_WORKFLOWS = 200

WORKFLOWS: Sequence[type] = [
    LicenseOrderWorkflow,
    RenewalCycleWorkflow,
    RenewalPaymentWorkflow,
    SubscriptionWorkflow,
    SubscriptionAdoptionWorkflow,
]


def activities_of(*instances: object) -> list:
    """Every @activity.defn method of the given activity-class instances."""
    found = []
    for instance in instances:
        for name in dir(type(instance)):
            member = getattr(instance, name)
            if callable(member) and hasattr(member, "__temporal_activity_definition"):
                found.append(member)
    return found


class Workers:
    """The main task queue and the renewal cycle's queue, served by one process."""

    def __init__(
        self, client: Client, task_queue: str, activities: list, *, strict_sandbox: bool = False
    ) -> None:
        self._running = AsyncExitStack()
        common = dict(
            activities=activities,
            # Tests run the strict sandbox; production, unless WORKFLOW_SANDBOX, none (sandbox.py).
            workflow_runner=workflow_runner(strict=strict_sandbox),
            # Bad payloads fail the workflow cleanly instead of retrying its task forever.
            workflow_failure_exception_types=[pydantic.ValidationError],
            graceful_shutdown_timeout=timedelta(seconds=15),
        )
        self.workers = [
            # Every workflow type, the cycle too: cycles started before it had its own queue.
            Worker(
                client,
                task_queue=task_queue,
                workflows=list(WORKFLOWS),
                max_cached_workflows=MAX_CACHED_WORKFLOWS,
                **common,
            ),
            Worker(
                client,
                task_queue=renewal_cycle_queue(task_queue),
                workflows=[RenewalCycleWorkflow],
                max_cached_workflows=50,
                **common,
            ),
        ]

    async def run(self) -> None:
        await asyncio.gather(*(worker.run() for worker in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(worker.shutdown() for worker in self.workers))

    async def __aenter__(self) -> Workers:
        # If the second worker cannot start, the first one is stopped again.
        async with AsyncExitStack() as stack:
            for worker in self.workers:
                await stack.enter_async_context(worker)
            self._running = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._running.__aexit__(*exc)


def create_worker(
    client: Client,
    task_queue: str,
    activity_instances: Sequence[object],
    *,
    strict_sandbox: bool = False,
) -> Workers:
    return Workers(
        client, task_queue, activities_of(*activity_instances), strict_sandbox=strict_sandbox
    )


async def build_activities(
    settings: Settings, client: Client, stack: AsyncExitStack
) -> list[object]:
    registry = await asyncio.to_thread(Registry.from_url, settings.database_url)
    stack.callback(registry.dispose)
    provider = build_provider(settings)
    await stack.enter_async_context(provider)
    mailer = SmtpMailer.from_settings(settings)
    stack.push_async_callback(mailer.aclose)  # QUIT the pooled SMTP connections
    return wire_activities(
        # Every provider call counted by operation, whichever adapter PROVIDER selects.
        provider=MeteredProvider(provider, settings.provider.value),
        registry=registry,
        vault=SecretVault.from_settings(settings),
        mailer=mailer,
        client=client,
        task_queue=settings.task_queue,
        ops_email=settings.ops_email,
        business_timezone=settings.business_timezone,
        payment_cutoff_day=settings.payment_cutoff_day,
    )


def wire_activities(
    *,
    provider: Provider,
    registry: Registry,
    vault: SecretVault,
    mailer: Mailer,
    client: Client,
    task_queue: str,
    ops_email: str,
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE,
    payment_cutoff_day: int = DEFAULT_CUTOFF_DAY,
) -> list[object]:
    """Every activity class, holding its injected clients (tests and benchmarks pass theirs)."""
    return [
        OrderSteps(
            provider=provider,
            registry=registry,
            vault=vault,
            mailer=mailer,
            client=client,
            task_queue=task_queue,
            ops_email=ops_email,
            business_timezone=business_timezone,
        ),
        SubscriptionActivities(
            provider=provider,
            registry=registry,
            mailer=mailer,
            business_timezone=business_timezone,
            payment_cutoff_day=payment_cutoff_day,
        ),
        RenewalActivities(
            registry=registry,
            provider=provider,
            mailer=mailer,
            client=client,
            task_queue=task_queue,
            ops_email=ops_email,
        ),
        AdoptionActivities(
            provider=provider,
            registry=registry,
            client=client,
            task_queue=task_queue,
            ops_email=ops_email,
        ),
        OpsActivities(
            registry=registry,
            mailer=mailer,
            ops_email=ops_email,
            business_timezone=business_timezone,
        ),
    ]


async def run_worker(settings: Settings) -> None:
    # One Prometheus registry for the SDK runtime's metrics and ours (temporalutil/metrics.py).
    metrics = ProcessMetrics.create(service="csp-worker", database_url=settings.database_url)
    client = await connect(settings, runtime=metrics.runtime)
    async with AsyncExitStack() as stack:
        stack.callback(metrics.close)
        instances = await build_activities(settings, client, stack)
        worker = create_worker(
            client, settings.task_queue, instances, strict_sandbox=settings.workflow_sandbox
        )
        if settings.metrics_address:
            server = metrics.serve(settings.metrics_address)
            stack.callback(server.close)
            log.info("metrics_serving", url=server.url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.shutdown()))
        log.info(
            "worker_started",
            task_queue=settings.task_queue,
            cycle_task_queue=renewal_cycle_queue(settings.task_queue),
            temporal=settings.temporal_address,
            namespace=settings.temporal_namespace,
            provider=settings.provider.value,
        )
        await worker.run()
        log.info("worker_stopped")


def load_settings() -> Settings:
    """The settings, or exit non-zero naming what is missing or refused (nothing starts)."""
    try:
        return get_settings()
    except pydantic.ValidationError as err:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg']}"
            for e in err.errors()
        )
        sys.exit(f"worker: refusing to start: {reasons}")


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    event_loop.run(run_worker(settings), settings.event_loop)
    # Works around the interpreter-exit crash of the SDK's native runtime (sdk-python#300).
    gc.collect()


if __name__ == "__main__":
    main()
