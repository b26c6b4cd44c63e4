"""PROVIDER selects the adapter; an unconfigured provider stops the worker naming what is
missing; a production deployment refuses sandbox URLs, tokens and example addresses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from csp_core.providers.factory import build_provider
from csp_core.providers.partner_center import PartnerCenterClient
from csp_core.providers.xvantage import XvantageClient
from csp_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INGRAM = {
    "provider": "ingram",
    "provider_base_url": "https://api.ingrammicro.com:443",
    "ingram_client_id": "client",
    "ingram_client_secret": "s3cr3t-value",
    "ingram_customer_number": "20-222222",
}
PARTNER_CENTER = {
    "provider": "partner_center",
    "partner_center_client_id": "8c3d0b1e-app",
    "partner_center_client_secret": "app-s3cr3t-value",
    "partner_center_refresh_token": "refresh-s3cr3t-value",
    "partner_tenant_id": "5a1d3c2e-7f64-4b1a-9e0d-2c8b7a6f5e41",
}
PC_MISSING = "PARTNER_CENTER_CLIENT_ID, PARTNER_CENTER_CLIENT_SECRET, PARTNER_CENTER_REFRESH_TOKEN"
PRODUCTION_MAIL = {
    "mail_from": "Licencias <licencias@marketplace.com.mx>",
    "ops_email": "ops@marketplace.com.mx",
}


def refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)  # type: ignore[arg-type]
    return str(refused.value)


def test_each_provider_names_the_settings_it_misses() -> None:
    assert f"PROVIDER=partner_center is not configured: set {PC_MISSING}" in refusal(
        provider="partner_center"
    )
    # An empty secret (compose passes unset variables as empty) is not a secret.
    assert "PARTNER_CENTER_REFRESH_TOKEN" in refusal(
        **{**PARTNER_CENTER, "partner_center_refresh_token": ""}
    )
    message = refusal(provider="ingram")
    assert (
        "set PROVIDER_BASE_URL, INGRAM_CLIENT_ID, INGRAM_CLIENT_SECRET, INGRAM_CUSTOMER_NUMBER"
        in message
    )
    assert "INGRAM_CLIENT_ID" not in refusal(**{**INGRAM, "ingram_customer_number": None})


def test_the_sandbox_needs_nothing_and_gets_the_local_sandbox() -> None:
    settings = Settings()
    assert settings.provider_url == "http://127.0.0.1:8100"
    assert isinstance(build_provider(settings), PartnerCenterClient)


def test_provider_ingram_builds_the_xvantage_adapter() -> None:
    assert isinstance(build_provider(Settings(**INGRAM)), XvantageClient)  # type: ignore[arg-type]


def test_partner_center_signs_in_as_app_user_and_takes_no_static_token() -> None:
    settings = Settings(**PARTNER_CENTER)  # type: ignore[arg-type]
    assert settings.provider_url == "https://api.partnercenter.microsoft.com"
    assert settings.partner_center_authority == (
        "https://login.microsoftonline.com/5a1d3c2e-7f64-4b1a-9e0d-2c8b7a6f5e41"
    )
    assert isinstance(build_provider(settings), PartnerCenterClient)
    message = refusal(**PARTNER_CENTER, provider_api_key="a-static-token")
    assert "takes no PROVIDER_API_KEY" in message
    assert "a-static-token" not in message


def test_a_refusal_never_prints_the_secrets_it_was_given() -> None:
    message = refusal(**{**INGRAM, "provider_base_url": None})
    assert "s3cr3t-value" not in message
    message = refusal(**{**PARTNER_CENTER, "partner_center_client_id": None})
    assert "s3cr3t-value" not in message


def test_production_refuses_sandbox_urls_tokens_and_example_addresses() -> None:
    message = refusal(deployment="production", provider="sandbox", provider_api_key="sandbox-token")
    assert "PROVIDER=sandbox" in message
    assert "PROVIDER_BASE_URL=http://127.0.0.1:8100 is not a provider's https URL" in message
    assert "PROVIDER_API_KEY is the sandbox token" in message
    assert "MAIL_FROM=Marketplace Microsoft <licencias@marketplace.example.mx>" in message
    assert "OPS_EMAIL=operaciones@marketplace.example.mx is an example address" in message
    local = refusal(
        deployment="production",
        **{**INGRAM, "provider_base_url": "https://localhost:8100"},
        **PRODUCTION_MAIL,
    )
    assert "PROVIDER_BASE_URL=https://localhost:8100" in local
    assert "ops@a.test is an example address" in refusal(
        deployment="production",
        **INGRAM,
        mail_from=PRODUCTION_MAIL["mail_from"],
        ops_email="ops@a.test",
    )


def test_production_refuses_a_local_sign_in_and_the_example_partner_tenant() -> None:
    message = refusal(
        deployment="production",
        **{**PARTNER_CENTER, "partner_tenant_id": "00000000-0000-0000-0000-00000000a5e0"},
        partner_center_authority="https://127.0.0.1:8100/tenant",
        **PRODUCTION_MAIL,
    )
    assert "PARTNER_CENTER_AUTHORITY=https://127.0.0.1:8100/tenant is not Azure AD's" in message
    assert "PARTNER_TENANT_ID=00000000-0000-0000-0000-00000000a5e0 is the example" in message


def test_production_takes_a_real_configuration_and_development_the_local_sandbox() -> None:
    Settings(deployment="production", **INGRAM, **PRODUCTION_MAIL)  # type: ignore[arg-type]
    Settings(deployment="production", **PARTNER_CENTER, **PRODUCTION_MAIL)  # type: ignore[arg-type]
    # `make run` with PROVIDER=ingram: the local sandbox is fine outside production.
    Settings(**{**INGRAM, "provider_base_url": "http://127.0.0.1:8100"})  # type: ignore[arg-type]


def test_the_worker_exits_non_zero_naming_what_is_missing(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROVIDER", "INGRAM_", "PARTNER_CENTER_"))
    }
    env["PROVIDER"] = "partner_center"
    done = subprocess.run(
        [sys.executable, str(ROOT / "worker.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PROVIDER=partner_center is not configured" in done.stderr
    assert PC_MISSING in done.stderr
