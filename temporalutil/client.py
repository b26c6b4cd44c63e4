"""Connecting to Temporal with the project's converter (encrypting when keys are set), over TLS
with a client certificate or an API key when the settings say so (Temporal Cloud)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from csp_core.settings import Settings
from temporalutil.codec import data_converter


class TemporalUnreachable(ConnectionError):
    """Temporal could not be reached at the configured address."""


class TemporalTLSFileError(ValueError):
    """A TLS file the settings name cannot be read."""


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise TemporalTLSFileError(f"{setting}={path}: {err.strerror or err}") from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """False for plaintext; True for TLS with the system's roots; a TLSConfig when a client
    certificate, a private CA or a server name is configured. Files are read at connect time."""
    if not settings.temporal_uses_tls:
        return False
    cert, key = settings.temporal_tls_client_cert_path, settings.temporal_tls_client_key_path
    ca = settings.temporal_tls_server_ca_cert_path
    if not (cert or ca or settings.temporal_tls_server_name):
        return True
    return TLSConfig(
        client_cert=_read(cert, "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        client_private_key=_read(key, "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        server_root_ca_cert=_read(ca, "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """`runtime`: the process's metrics runtime (temporalutil/metrics.py), so this client's
    metrics are exported with the rest; the SDK's default runtime otherwise."""
    converter = data_converter([k.get_secret_value() for k in settings.payload_encryption_keys])
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=converter,
            tls=tls_config(settings),
            api_key=api_key,
            runtime=runtime,
        )
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        raise TemporalUnreachable(
            f"cannot connect to Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}; set TEMPORAL_ADDRESS): {err}"
        ) from err
