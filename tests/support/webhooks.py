"""A stack whose sandbox pushes its events to the HTTP API (served for real by uvicorn), and
what a test needs to send events of its own: Ingram's HMAC signature, and a Partner Center
signer whose certificate is served on 127.0.0.1 (a host the test API trusts)."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import SecretStr
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from http_api import create_app
from http_api.webhooks.signatures import ingram_signature
from sandbox.events import Signer
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from tests.conftest import SANDBOX_TOKEN
from tests.support.http_api import serving
from tests.support.stack import Stack, running_stack
from workflows.order import LicenseOrderWorkflow

SECRET = "test-webhook-secret"
INGRAM_PATH = "/v1/webhooks/ingram/order-status"
PARTNER_CENTER_PATH = "/v1/webhooks/partner-center"


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def webhook_settings(stack: Stack) -> Any:
    return stack.settings.model_copy(
        update={
            "ingram_webhook_secret": SecretStr(SECRET),
            "partner_center_webhook_cert_hosts": ["127.0.0.1"],
        }
    )


@dataclass
class Pushed:
    stack: Stack
    api: httpx.AsyncClient  # the HTTP API, where the sandbox pushes its events
    sandbox: httpx.Client  # the sandbox's controls

    def stats(self) -> dict[str, Any]:
        return self.stack.stats()


@asynccontextmanager
async def pushed_stack(
    env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
    *,
    ingram: bool = False,
    **sandbox_kwargs: Any,
) -> AsyncIterator[Pushed]:
    """The sandbox (its own, with `sandbox_kwargs`) pushing to the API on a port reserved
    first; the stack's worker on the time-skipping server."""
    sock = free_socket()
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with (
        serve_in_background(
            port=0,
            token=SANDBOX_TOKEN,
            events_url=f"{api_url}/v1/webhooks",
            events_secret=SECRET,
            events_first_delay_s=0.2,
            **sandbox_kwargs,
        ) as sandbox_url,
        httpx.Client(base_url=sandbox_url, timeout=10) as control,
    ):
        async with running_stack(
            env,
            sandbox=control,
            sandbox_token=SANDBOX_TOKEN,
            sink=smtp_sink,
            registry=registry,
            registry_path=registry_path,
            queue_prefix="pushed",
            ingram=ingram,
        ) as stack:
            app = create_app(
                webhook_settings(stack),
                client=stack.tracking_client,
                registry=registry,
                provider=stack.provider,
            )
            async with (
                serving(app, sock) as url,
                httpx.AsyncClient(base_url=url, timeout=60) as http,
            ):
                yield Pushed(stack, http, control)


def ingram_event(
    order_number: str | None = None,
    po_number: str | None = None,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "topic": "resellers/orders",
        "event": "im::updated",
        "eventTimeStamp": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "eventId": event_id or str(uuid.uuid4()),
        "resource": [
            {
                "eventType": "im::updated",
                "orderNumber": order_number,
                "customerOrderNumber": po_number,
                "lines": [],
            }
        ],
    }


def signed_ingram(event: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    """Keyword arguments for httpx: the body and Ingram's x-hub-signature."""
    return {
        "content": json.dumps(event).encode(),
        "headers": {
            "x-hub-signature": ingram_signature(secret, event["eventId"]),
            "Content-Type": "application/json",
        },
    }


class PartnerCenterSigner:
    """Signs events as Partner Center does; its certificate is served at `cert_url`."""

    def __init__(self, cert_url: str, signer: Signer) -> None:
        self.cert_url, self.signer = cert_url, signer

    def signed(self, event: dict[str, Any], **header_changes: str) -> dict[str, Any]:
        raw = json.dumps(event).encode()
        headers = {
            "Authorization": f"Signature {self.signer.sign(raw)}",
            "X-MS-Certificate-Url": self.cert_url,
            "Content-Type": "application/json",
            **header_changes,
        }
        return {"content": raw, "headers": headers}


@asynccontextmanager
async def certificate_host() -> AsyncIterator[PartnerCenterSigner]:
    signer = Signer()
    app = FastAPI()

    @app.get("/certificate")
    async def certificate() -> Response:
        return Response(signer.pem, media_type="application/x-pem-file")

    async with serving(app) as url:
        yield PartnerCenterSigner(f"{url}/certificate", signer)


def relationship_event(tenant_id: str) -> dict[str, Any]:
    return {
        "EventName": "reseller-relationship-accepted-by-customer",
        "ResourceUri": f"https://api.partnercenter.microsoft.com/v1/customers/{tenant_id}",
        "ResourceName": "customer",
        "AuditUri": None,
        "ResourceChangeUtcDate": datetime.now(UTC).isoformat(),
    }


async def eventually(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Wait (real time: the test server's clock is not skipped meanwhile) until `check()` (a
    value or an awaitable) is truthy; its last value."""
    value = None
    for _ in range(int(seconds / 0.1)):
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    return value


async def stage_of(handle: WorkflowHandle) -> str:
    return (await handle.query(LicenseOrderWorkflow.status)).stage.value


async def updates_and_signals(handle: WorkflowHandle) -> list[str]:
    """The names of the Updates accepted and signals received, in history order."""
    names = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            attrs = event.workflow_execution_update_accepted_event_attributes
            names.append(attrs.accepted_request.input.name)
        if event.HasField("workflow_execution_signaled_event_attributes"):
            names.append(event.workflow_execution_signaled_event_attributes.signal_name)
    return names
