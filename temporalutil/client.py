"""Connecting to Temporal with the project's converter."""

from temporalio.client import Client

from csp_core.settings import Settings
from temporalutil.converter import DATA_CONVERTER


class TemporalUnreachable(ConnectionError):
    """Temporal could not be reached at the configured address."""


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
        )
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        raise TemporalUnreachable(
            f"cannot connect to Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}; set TEMPORAL_ADDRESS): {err}"
        ) from err
