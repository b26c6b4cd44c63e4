"""Connecting to Temporal with the project's converter."""

from temporalio.client import Client

from csp_core.settings import Settings
from temporalutil.converter import DATA_CONVERTER


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )
