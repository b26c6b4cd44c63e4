"""App+User sign-in: the Partner Center client against the sandbox served over TLS, whose
Azure AD face turns the refresh token into access tokens through the real MSAL.

A token that expires mid-run is renewed (on the 401, or before it expires) and never reads as
a refusal; a refused sign-in is permanent and says which settings to fix; secrets never reach
the logs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from csp_core.providers.factory import build_provider
from csp_core.providers.partner_center import AppUserToken, PartnerCenterClient
from csp_core.providers.partner_center.transport import tls_verify
from csp_core.providers.port import ProviderError
from csp_core.settings import Settings
from sandbox.server import serve_in_background
from sandbox.state import NORTHWIND_DOMAIN
from sandbox.tls import TlsFiles, self_signed
from tests.test_provider_sandbox import LINES, new_customer

TENANT = "00000000-0000-0000-0000-00000000a5e0"
CLIENT_ID, CLIENT_SECRET = "pc-app", "pc-app-secret-value"
REFRESH_TOKEN = "consented-refresh-token-value"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("tls"))


def serve(tls: TlsFiles, **kwargs: Any) -> Any:
    return serve_in_background(
        port=0,
        tls=tls,
        token="static-token-not-used-here",
        partner_center_client_id=CLIENT_ID,
        partner_center_client_secret=CLIENT_SECRET,
        partner_center_refresh_token=REFRESH_TOKEN,
        **kwargs,
    )


@pytest.fixture(scope="module")
def sandbox_url(tls: TlsFiles) -> Iterator[str]:
    with serve(tls) as url:
        yield url


def control(url: str, tls: TlsFiles, method: str, path: str) -> Any:
    response = httpx.request(method, f"{url}{path}", verify=tls_verify(str(tls.cert)))
    return response.raise_for_status().json()


def app_user(url: str, tls: TlsFiles, refresh_token: str = REFRESH_TOKEN) -> AppUserToken:
    return AppUserToken(
        authority=f"{url}/{TENANT}",
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        refresh_token=SecretStr(refresh_token),
        validate_authority=False,  # the sandbox is no Azure AD instance MSAL knows
        verify=str(tls.cert),
        timeout=5,
    )


@pytest.fixture
async def client(sandbox_url: str, tls: TlsFiles) -> AsyncIterator[PartnerCenterClient]:
    control(sandbox_url, tls, "POST", "/sandbox/reset")
    auth = app_user(sandbox_url, tls)
    async with PartnerCenterClient(
        sandbox_url, auth, timeout=5, verify=tls_verify(str(tls.cert))
    ) as pc:
        yield pc


def sign_in(url: str, tls: TlsFiles) -> dict[str, int]:
    return control(url, tls, "GET", "/sandbox/partner-center/sign-in")


async def test_a_token_expiring_mid_run_is_renewed_and_the_order_goes_through(
    client: PartnerCenterClient, sandbox_url: str, tls: TlsFiles
) -> None:
    before = sign_in(sandbox_url, tls)
    assert await client.find_customer_by_domain(NORTHWIND_DOMAIN) is not None
    assert sign_in(sandbox_url, tls)["tokens_issued"] == before["tokens_issued"] + 1

    control(sandbox_url, tls, "POST", "/sandbox/partner-center/expire-tokens")
    created = await client.create_customer(new_customer(), request_id=str(uuid.uuid4()))
    placed = await client.place_order(
        created.tenant_id, LINES, request_id=str(uuid.uuid4()), new_tenant=new_customer()
    )

    assert placed.status == "completed" and len(placed.subscriptions) == 2
    after = sign_in(sandbox_url, tls)
    assert after["tokens_issued"] == before["tokens_issued"] + 2
    assert after["tokens_refused"] == before["tokens_refused"] + 1
    # The refused call was sent again as the same logical request (same MS-RequestId).
    seen = control(sandbox_url, tls, "GET", "/sandbox/requests?face=partner_center")
    validations = [r for r in seen if r["path"] == "/v1/validations/address"]
    assert len(validations) == 2
    assert len({r["headers"]["ms-requestid"] for r in validations}) == 1
    assert {r["headers"]["authorization"] for r in seen} == {"Bearer"}


async def test_a_token_is_renewed_before_it_expires(tls: TlsFiles) -> None:
    with serve(tls, partner_center_token_ttl_seconds=3) as url:
        async with PartnerCenterClient(
            url, app_user(url, tls), timeout=5, verify=tls_verify(str(tls.cert))
        ) as pc:
            await pc.domain_available("nuevo1.onmicrosoft.com")
            # Within the last tenth of the token's life: renewed before Partner Center refuses it.
            await asyncio.sleep(2.8)
            await pc.domain_available("nuevo2.onmicrosoft.com")
        counts = sign_in(url, tls)
    assert counts == {"tokens_issued": 2, "tokens_refused": 0}


async def test_a_refused_sign_in_is_permanent_and_names_the_settings(
    sandbox_url: str, tls: TlsFiles
) -> None:
    auth = app_user(sandbox_url, tls, refresh_token="revoked-refresh-token")
    with capture_logs() as logs:
        async with PartnerCenterClient(
            sandbox_url, auth, timeout=5, verify=tls_verify(str(tls.cert))
        ) as pc:
            with pytest.raises(ProviderError) as refused:
                await pc.domain_available("nuevo.onmicrosoft.com")
    assert refused.value.status == 401 and refused.value.transient is False
    assert refused.value.code == "invalid_grant"
    assert "PARTNER_CENTER_REFRESH_TOKEN" in str(refused.value)
    dumped = repr(logs) + str(refused.value) + repr(auth)
    assert "revoked-refresh-token" not in dumped and CLIENT_SECRET not in dumped


async def test_an_unreachable_sign_in_is_worth_retrying(tls: TlsFiles) -> None:
    with serve(tls) as url:
        pass  # stopped: nothing listens there any more
    async with PartnerCenterClient(url, app_user(url, tls), timeout=2) as pc:
        with pytest.raises(ProviderError) as unreachable:
            await pc.domain_available("nuevo.onmicrosoft.com")
    assert unreachable.value.transient is True


async def test_secrets_never_reach_the_logs(
    client: PartnerCenterClient, sandbox_url: str, tls: TlsFiles
) -> None:
    with capture_logs() as logs:
        await client.find_customer_by_domain(NORTHWIND_DOMAIN)
        control(sandbox_url, tls, "POST", "/sandbox/partner-center/expire-tokens")
        await client.find_customer_by_domain(NORTHWIND_DOMAIN)
    dumped = repr(logs) + repr(client)
    assert CLIENT_SECRET not in dumped and REFRESH_TOKEN not in dumped
    events = [entry["event"] for entry in logs]
    assert events.count("partner_center.token_acquired") >= 1
    assert "partner_center.token_rejected" in events


async def test_settings_build_the_app_user_client_for_the_sandbox(
    sandbox_url: str, tls: TlsFiles
) -> None:
    settings = Settings(
        provider="partner_center",
        provider_base_url=sandbox_url,
        provider_ca_bundle=Path(tls.cert),
        partner_center_authority=f"{sandbox_url}/{TENANT}",
        partner_center_client_id=CLIENT_ID,
        partner_center_client_secret=SecretStr(CLIENT_SECRET),
        partner_center_refresh_token=SecretStr(REFRESH_TOKEN),
    )
    provider = build_provider(settings)
    assert isinstance(provider, PartnerCenterClient)
    try:
        found = await provider.find_customer_by_domain(NORTHWIND_DOMAIN)
    finally:
        await provider.aclose()
    assert found is not None and found.has_reseller_relationship
