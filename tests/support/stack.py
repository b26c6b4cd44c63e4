"""The test stack: one object that tests drive like an operator would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.testing import WorkflowEnvironment

from api import orders as order_api
from csp_core.notifications.mailer import Mailer, SmtpMailer
from csp_core.orders.models import Order, parse_order
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.port import Provider
from csp_core.providers.xvantage import XvantageClient
from csp_core.registry import Registry
from csp_core.secrets import SecretVault, generate_key
from csp_core.settings import Settings
from sandbox.smtp_sink import SmtpSink
from worker import create_worker, wire_activities
from workflows.order import LicenseOrderWorkflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPS_EMAIL = "ops@test.example.mx"


def example(name: str, **changes: Any) -> Order:
    """An example order with a fresh order id (and any field changed)."""
    data = json.loads((EXAMPLES / name).read_text())
    data["order_id"] = f"T-{uuid.uuid4().hex[:12].upper()}"
    data.update(changes)
    return parse_order(data)


@dataclass
class Stack:
    env: WorkflowEnvironment
    task_queue: str
    provider: Provider
    registry: Registry
    vault: SecretVault
    mailer: Mailer
    sink: SmtpSink
    sandbox: httpx.Client
    registry_path: Path
    settings: Settings = field(init=False)

    started: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        # Polling the provider every ~6 h (not the production hour) keeps month-long tests
        # quick; the polling test sets its own interval. 367 min (a prime) never lands on the
        # whole days tests sleep before they signal: the time-skipping test server refuses a
        # workflow task that cancels a timer firing at that very instant ("invalid history
        # builder state for action") and the test hangs, where a real server has the worker
        # replay it with the timer fired.
        # Renewals begin as soon as the cycle starts them here; the production wait
        # (RENEWAL_OPENING_DELAY_SECONDS) has its own tests (test_renewal_opening_delay.py).
        self.settings = Settings(
            task_queue=self.task_queue,
            ops_email=OPS_EMAIL,
            acceptance_poll_minutes=367,
            renewal_opening_delay_seconds=0,
        )

    async def submit(self, order: Order) -> WorkflowHandle:
        result = await order_api.submit_order(self.env.client, self.registry, order, self.settings)
        self.started.append(result.workflow_id)
        return self.env.client.get_workflow_handle_for(
            LicenseOrderWorkflow.run, result.workflow_id, run_id=result.run_id
        )

    async def result(self, handle: WorkflowHandle) -> Any:
        """Await a workflow's result, letting the test server skip time meanwhile (only handles
        returned by start_workflow do that by themselves)."""
        await self.first_task_done(handle)
        async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            return await handle.result()

    async def settle(self, handle: WorkflowHandle, step: timedelta = timedelta(seconds=5)) -> Any:
        """Await a workflow's result moving time only by `step` at a time (env.sleep).

        Use it when another workflow stays open without a timer (a SubscriptionWorkflow after
        its order): with time skipping left unlocked, the test server may jump years ahead."""
        await self.first_task_done(handle)
        for _ in range(2000):
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await self.env.sleep(step)
        return await handle.result()

    async def first_task_done(self, handle: WorkflowHandle) -> None:
        """Wait until the workflow's first task has run.

        The v1 test server may skip time past a workflow task that is still being worked on
        (timing it out), so tests let the first task complete before unlocking time skipping.
        """
        for _ in range(200):
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            if (description.raw_description.workflow_execution_info.history_length or 0) > 3:
                break
            await asyncio.sleep(0.05)

    @property
    def tracking_client(self) -> Client:
        """The test server's client, remembering every workflow started through it (the
        renewal cycle's activity starts payment workflows), so all are ended after the test."""
        config = self.env.client.config()
        config["interceptors"] = [_RememberStarts(self.started)]
        return Client(**config)

    async def terminate_leftovers(self) -> None:
        """A test must not leave workflows behind: their timers would keep firing, with no
        worker, each time a later test skips time, and stall the test server."""
        for workflow_id in dict.fromkeys(self.started):
            handle = self.env.client.get_workflow_handle(workflow_id)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test finished")

    def activities(self) -> list[object]:
        return wire_activities(
            provider=self.provider,
            registry=self.registry,
            vault=self.vault,
            mailer=self.mailer,
            client=self.tracking_client,
            task_queue=self.task_queue,
            ops_email=OPS_EMAIL,
        )

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        try:
            async with create_worker(
                self.env.client, self.task_queue, self.activities(), strict_sandbox=True
            ):
                yield
        finally:
            await self.terminate_leftovers()

    def stats(self) -> dict[str, int]:
        response = self.sandbox.get("/sandbox/stats")
        response.raise_for_status()
        return response.json()

    def mails(self, order_id: str | None = None) -> list[EmailMessage]:
        messages = self.sink.messages()
        if order_id is None:
            return messages
        return [m for m in messages if f"order-{order_id}:" in str(m.get("X-CSP-Key", ""))]

    def mail_kinds(self, order_id: str) -> list[str]:
        return [str(m["X-CSP-Kind"]) for m in self.mails(order_id)]


class _RememberStarts(Interceptor):
    def __init__(self, started: list[str]) -> None:
        self.started = started

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RememberStartsOutbound(next, self.started)


class _RememberStartsOutbound(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, started: list[str]) -> None:
        super().__init__(next)
        self._started = started

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        self._started.append(input.id)
        return await super().start_workflow(input)


@asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    *,
    sandbox: httpx.Client,
    sandbox_token: str,
    sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
    queue_prefix: str,
    transport: httpx.AsyncBaseTransport | None = None,
    ingram: bool = False,
    client: PartnerCenterClient | XvantageClient | None = None,
) -> AsyncIterator[Stack]:
    """A worker with the real activities on its own task queue, wired to the sandbox over
    HTTP (at the control client's base URL), the SMTP sink and the registry. `transport`
    lets a test see (and break) the provider conversation, e.g. lose a response. `ingram`:
    the Ingram Xvantage adapter against the sandbox's Xvantage face (else Partner Center's);
    `client`: a provider client of the test's own (e.g. Partner Center with App+User tokens)."""
    base_url = str(sandbox.base_url).rstrip("/")
    if client is None:
        client = (
            xvantage_client(base_url, transport)
            if ingram
            else PartnerCenterClient(
                base_url, SecretStr(sandbox_token), timeout=10, transport=transport
            )
        )
    async with client as provider:
        stack = Stack(
            env=env,
            task_queue=f"{queue_prefix}-{uuid.uuid4()}",
            provider=provider,
            registry=registry,
            vault=SecretVault(generate_key()),
            mailer=SmtpMailer("127.0.0.1", sink.port, "licencias@test.example.mx"),
            sink=sink,
            sandbox=sandbox,
            registry_path=registry_path,
        )
        async with stack.worker():
            yield stack


def xvantage_client(
    base_url: str, transport: httpx.AsyncBaseTransport | None = None
) -> XvantageClient:
    """The Ingram adapter with the sandbox's default client credentials."""
    return XvantageClient(
        base_url,
        client_id="sandbox-client",
        client_secret=SecretStr("sandbox-secret"),
        customer_number="20-222222",
        partner_tenant_id="00000000-0000-0000-0000-00000000a5e0",
        partner_mpn_id="6543210",
        ingram_tenant_id="00000000-0000-0000-0000-0000000019a0",
        timeout=10,
        transport=transport,
    )
