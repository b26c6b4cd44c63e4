"""The order path through the workflows with PROVIDER=partner_center's client: App+User tokens
from the sandbox's Azure AD face (over TLS, through MSAL), New Commerce carts and the MCA.
Create (with a token that expired before the first call), link to a tenant already ours, link
after the client's acceptance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from csp_core.providers.partner_center import AppUserToken, PartnerCenterClient
from csp_core.providers.partner_center.transport import tls_verify
from csp_core.registry import Registry
from csp_core.stages import OrderStage
from sandbox.server import serve_in_background
from sandbox.smtp_sink import SmtpSink
from sandbox.tls import TlsFiles, self_signed
from tests.support.stack import Stack, example, running_stack
from workflows.order import LicenseOrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
TENANT = "00000000-0000-0000-0000-00000000a5e0"
CREDENTIALS = {
    "partner_center_client_id": "pc-app",
    "partner_center_client_secret": "pc-app-secret",
    "partner_center_refresh_token": "pc-refresh-token",
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_sandbox_url(tls: TlsFiles) -> Iterator[str]:
    with serve_in_background(port=0, tls=tls, token="unused-static-token", **CREDENTIALS) as url:
        yield url


@pytest.fixture
def control(tls_sandbox_url: str, tls: TlsFiles) -> Iterator[httpx.Client]:
    verify = tls_verify(str(tls.cert))
    with httpx.Client(base_url=tls_sandbox_url, timeout=10, verify=verify) as client:
        client.post("/sandbox/reset").raise_for_status()
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def pc(
    ts_env: WorkflowEnvironment,
    control: httpx.Client,
    tls: TlsFiles,
    smtp_sink: SmtpSink,
    registry: Registry,
    registry_path: Path,
) -> AsyncIterator[Stack]:
    url = str(control.base_url).rstrip("/")
    auth = AppUserToken(
        authority=f"{url}/{TENANT}",
        client_id=CREDENTIALS["partner_center_client_id"],
        client_secret=SecretStr(CREDENTIALS["partner_center_client_secret"]),
        refresh_token=SecretStr(CREDENTIALS["partner_center_refresh_token"]),
        validate_authority=False,
        verify=str(tls.cert),
    )
    client = PartnerCenterClient(url, auth, timeout=10, verify=tls_verify(str(tls.cert)))
    async with running_stack(
        ts_env,
        sandbox=control,
        sandbox_token="unused-static-token",
        sink=smtp_sink,
        registry=registry,
        registry_path=registry_path,
        queue_prefix="pc",
        client=client,
    ) as stack:
        yield stack


def sign_in(stack: Stack) -> dict[str, Any]:
    return stack.sandbox.get("/sandbox/partner-center/sign-in").json()


async def test_create_mode_with_a_token_expired_mid_run(pc: Stack) -> None:
    await pc.provider.domain_available("calentamiento.onmicrosoft.com")  # a token is held
    pc.sandbox.post("/sandbox/partner-center/expire-tokens").raise_for_status()
    order = example("order-create.json")

    result = await pc.result(await pc.submit(order))

    assert result.stage is OrderStage.ACTIVE
    counted = pc.stats()["by_face"]["partner_center"]
    assert (counted["customers_created"], counted["orders_created"]) == (1, 1)
    assert counted["agreements_confirmed"] == 1  # the MCA, before the first order
    assert sign_in(pc) == {"tokens_issued": 2, "tokens_refused": 1}
    licenses = pc.registry.list_licenses("contosomx.onmicrosoft.com")
    assert [(lic.sku, lic.quantity, lic.status) for lic in licenses] == [
        ("CFQ7TTC0LH18:0001", 10, "active")
    ]
    assert pc.mail_kinds(order.order_id) == ["order_active"]


async def test_link_to_a_tenant_already_ours(pc: Stack) -> None:
    result = await pc.result(await pc.submit(example("order-link-ours.json")))

    assert result.stage is OrderStage.ACTIVE
    licenses = pc.registry.list_licenses("northwind.onmicrosoft.com")
    assert sorted(lic.quantity for lic in licenses) == [5, 25]
    assert pc.stats()["agreements_confirmed"] == 0  # northwind accepted the MCA long ago


async def test_link_after_the_clients_acceptance(pc: Stack) -> None:
    order = example("order-link-invite.json")
    handle = await pc.submit(order)
    await pc.env.sleep(timedelta(days=1))
    assert (await handle.query(LicenseOrderWorkflow.status)).stage is (
        OrderStage.AWAITING_PARTNER_ACCEPTANCE
    )

    pc.sandbox.post("/sandbox/customers/fabrikam.onmicrosoft.com/accept").raise_for_status()
    result = await pc.result(handle)

    assert result.stage is OrderStage.ACTIVE
    assert [lic.quantity for lic in pc.registry.list_licenses("fabrikam.onmicrosoft.com")] == [40]
    # Accepting us in the admin center accepted the MCA too: nothing for us to confirm.
    assert pc.stats()["agreements_confirmed"] == 0
