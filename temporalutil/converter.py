"""One data converter for every client, worker, test and replayer: pydantic models (Decimal,
aware datetimes, enums) round-trip through workflow history."""

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

DATA_CONVERTER: DataConverter = pydantic_data_converter
