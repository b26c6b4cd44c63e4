"""Connecting to Temporal with the project's converter (encrypting when keys are set)."""

from temporalio.client import Client

from csp_core.settings import Settings
from temporalutil.codec import data_converter


class TemporalUnreachable(ConnectionError):
    """Temporal could not be reached at the configured address."""


async def connect(settings: Settings) -> Client:
    converter = data_converter([k.get_secret_value() for k in settings.payload_encryption_keys])
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=converter,
        )
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        raise TemporalUnreachable(
            f"cannot connect to Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}; set TEMPORAL_ADDRESS): {err}"
        ) from err
