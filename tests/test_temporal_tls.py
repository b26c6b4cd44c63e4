"""Connecting to Temporal over TLS as to Temporal Cloud: mutual TLS with a client certificate,
or an API key over TLS, from settings alone (TEMPORAL_TLS_*, TEMPORAL_API_KEY). A TLS front
with its own CA stands before the time-skipping server; the worker's `connect` goes through it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from csp_core.settings import Settings
from temporalutil.client import TemporalTLSFileError, TemporalUnreachable, connect, tls_config
from tests.support.tls_proxy import SERVER_NAME, make_pki, tls_proxy


def target(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def test_mutual_tls_with_a_client_certificate(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path, client_name="csp-worker")
    async with tls_proxy(target(ts_env), pki, require_client_cert=True) as proxy:
        settings = Settings(
            temporal_address=proxy.address,
            temporal_namespace=ts_env.client.namespace,
            temporal_tls_client_cert_path=pki.client_cert,
            temporal_tls_client_key_path=pki.client_key,
            temporal_tls_server_ca_cert_path=pki.ca,
            temporal_tls_server_name=SERVER_NAME,
        )
        client = await connect(settings)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())

    assert info.capabilities is not None
    # The server side saw our client certificate, signed by its CA.
    assert proxy.client_names and set(proxy.client_names) == {"csp-worker"}


async def test_mutual_tls_without_the_certificate_is_refused(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    async with tls_proxy(target(ts_env), pki, require_client_cert=True) as proxy:
        settings = Settings(
            temporal_address=proxy.address,
            temporal_tls=True,
            temporal_tls_server_ca_cert_path=pki.ca,
            temporal_tls_server_name=SERVER_NAME,
        )
        with pytest.raises(TemporalUnreachable, match=proxy.address):
            await connect(settings)
    assert proxy.client_names == []


async def test_an_api_key_turns_tls_on(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    async with tls_proxy(target(ts_env), pki, require_client_cert=False) as proxy:
        settings = Settings(
            temporal_address=proxy.address,
            temporal_namespace=ts_env.client.namespace,
            temporal_api_key=SecretStr("cloud-api-key"),
            temporal_tls_server_ca_cert_path=pki.ca,
            temporal_tls_server_name=SERVER_NAME,
        )
        assert settings.temporal_uses_tls  # TEMPORAL_TLS unset: on, because of the key
        client = await connect(settings)
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert client.service_client.config.api_key == "cloud-api-key"


async def test_plaintext_stays_plaintext(ts_env: WorkflowEnvironment) -> None:
    settings = Settings(temporal_address=target(ts_env), temporal_namespace="default")
    assert tls_config(settings) is False
    assert Settings(temporal_api_key=SecretStr("k")).temporal_uses_tls  # Cloud: system roots
    assert tls_config(Settings(temporal_api_key=SecretStr("k"))) is True
    client = await connect(settings)
    assert client.service_client.config.tls is False


def test_tls_settings_that_cannot_work_are_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CLIENT_KEY_PATH go together"):
        Settings(temporal_tls_client_cert_path=tmp_path / "client.pem")
    with pytest.raises(ValidationError, match="TEMPORAL_API_KEY needs TLS"):
        Settings(temporal_api_key=SecretStr("k"), temporal_tls=False)
    missing = Settings(
        temporal_tls_client_cert_path=tmp_path / "absent.pem",
        temporal_tls_client_key_path=tmp_path / "absent.key",
    )
    with pytest.raises(TemporalTLSFileError, match="TEMPORAL_TLS_CLIENT_CERT_PATH=.*absent.pem"):
        tls_config(missing)


def test_the_settings_read_the_temporal_cli_environment_names(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("TEMPORAL_ADDRESS", "csp.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "csp.a1b2c")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "/run/secrets/temporal-client.pem")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", "/run/secrets/temporal-client.key")
    settings = Settings()
    assert settings.temporal_uses_tls
    assert settings.temporal_tls_client_cert_path == Path("/run/secrets/temporal-client.pem")
