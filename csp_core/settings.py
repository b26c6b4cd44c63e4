"""Runtime and business settings, read from the environment (and an optional .env file).

Business settings (cutoff day, reminder ladders, expiry, suspension policy) are snapshotted
into each workflow's input when it starts, so changing them never breaks a replay.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from csp_core.renewals.billing import CutoffPolicy
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE

DATA_DIR = Path(".data")
TASK_QUEUE = "csp-orchestrator"


class ProviderKind(StrEnum):
    SANDBOX = "sandbox"
    PARTNER_CENTER = "partner_center"
    INGRAM = "ingram"


def _int_list(value: object) -> object:
    if isinstance(value, str):
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    # Payload encryption (temporalutil/codec.py): comma-separated keys, the first encrypts.
    # Unset: payloads are stored as plain JSON (the local stack's default).
    payload_encryption_keys: Annotated[list[SecretStr], NoDecode] = []
    codec_server_port: int = 8081
    codec_cors_origins: Annotated[list[str], NoDecode] = [
        "http://localhost:8233",
        "http://127.0.0.1:8233",
    ]
    codec_auth_token: SecretStr | None = None  # required Authorization header, when set

    # Storage
    database_url: str = f"sqlite:///{DATA_DIR / 'csp.db'}"
    # Fernet key for secrets at rest (tenant admin passwords). When unset, a key is generated
    # once into secrets_key_file (development only; production sets SECRETS_KEY).
    secrets_key: SecretStr | None = None
    secrets_key_file: Path = DATA_DIR / "secrets.key"

    # Provider
    provider: ProviderKind = ProviderKind.SANDBOX
    provider_base_url: str = "http://127.0.0.1:8100"
    provider_api_key: SecretStr = SecretStr("sandbox-token")
    provider_timeout_seconds: float = 30.0
    # Our (the marketplace's) partner identifiers, sent as reseller of record.
    partner_tenant_id: str = "00000000-0000-0000-0000-00000000a5e0"
    partner_mpn_id: str = "6543210"

    # Mail
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Marketplace Microsoft <licencias@marketplace.example.mx>"
    ops_email: str = "operaciones@marketplace.example.mx"

    # Business rules
    # Countries (ISO 3166-1 alpha-2) a customer's address may be in; comma-separated.
    order_countries: Annotated[list[str], NoDecode] = ["MX"]
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE
    payment_cutoff_day: Annotated[int, Field(ge=2, le=28)] = 26
    acceptance_reminder_days: Annotated[list[int], NoDecode] = [2, 5, 10]
    acceptance_expiry_days: Annotated[int, Field(ge=1, le=365)] = 30
    acceptance_poll_minutes: Annotated[int, Field(ge=1)] = 60
    # Placed but not provisioned after this long: ops are asked to look (polling goes on).
    provisioning_escalation_hours: Annotated[int, Field(ge=1)] = 72
    renewal_reminder_days: Annotated[list[int], NoDecode] = [15, 20]
    renewal_escalation_day: Annotated[int, Field(ge=1, le=28)] = 23
    renewal_final_notice_day: Annotated[int, Field(ge=1, le=28)] = 25
    renewal_cutoff_policy: CutoffPolicy = CutoffPolicy.NOTIFY

    # HTTP API (`python -m http_api`; `make run` starts it). Each key's rate limit: a token
    # bucket per key id of API_RATE_LIMIT_PER_MINUTE (a key's own rate when it was made with
    # one), holding at most API_RATE_LIMIT_BURST requests at once.
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    api_rate_limit_per_minute: Annotated[int, Field(ge=1)] = 120
    api_rate_limit_burst: Annotated[int, Field(ge=1)] = 20

    # Logging
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("acceptance_reminder_days", "renewal_reminder_days", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _int_list(value)

    @field_validator("order_countries", mode="before")
    @classmethod
    def _countries(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [str(part).strip().upper() for part in value if str(part).strip()]
            if not value or not all(re.fullmatch(r"[A-Z]{2}", code) for code in value):
                raise ValueError("must list 2-letter ISO 3166 country codes, e.g. MX or MX,US")
        return value

    @field_validator("payload_encryption_keys", "codec_cors_origins", mode="before")
    @classmethod
    def _split_text(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
