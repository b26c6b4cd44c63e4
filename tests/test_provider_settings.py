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
PRODUCTION_MAIL = {
    "mail_from": "Licencias <licencias@marketplace.com.mx>",
    "ops_email": "ops@marketplace.com.mx",
}


def refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)  # type: ignore[arg-type]
    return str(refused.value)


def test_each_provider_names_the_settings_it_misses() -> None:
    assert "set PROVIDER_BASE_URL, PROVIDER_API_KEY" in refusal(provider="partner_center")
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


def test_a_refusal_never_prints_the_secrets_it_was_given() -> None:
    message = refusal(**{**INGRAM, "provider_base_url": None})
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


def test_production_takes_a_real_configuration_and_development_the_local_sandbox() -> None:
    Settings(deployment="production", **INGRAM, **PRODUCTION_MAIL)  # type: ignore[arg-type]
    # `make run` with PROVIDER=ingram: the local sandbox is fine outside production.
    Settings(**{**INGRAM, "provider_base_url": "http://127.0.0.1:8100"})  # type: ignore[arg-type]


def test_the_worker_exits_non_zero_naming_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVIDER", "INGRAM_"))}
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
    assert "PROVIDER_BASE_URL, PROVIDER_API_KEY" in done.stderr
