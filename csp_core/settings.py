"""Runtime and business settings, read from the environment (and an optional .env file).

Business settings (cutoff day, reminder ladders, expiry, suspension policy) are snapshotted
into each workflow's input when it starts, so changing them never breaks a replay.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from csp_core.renewals.billing import MAX_OPENING_DELAY, CutoffPolicy
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE

DATA_DIR = Path(".data")
TASK_QUEUE = "csp-orchestrator"


class ProviderKind(StrEnum):
    SANDBOX = "sandbox"
    PARTNER_CENTER = "partner_center"
    INGRAM = "ingram"


class Deployment(StrEnum):
    """DEPLOYMENT=production refuses what only belongs on a developer's machine (see
    `_production_guard`); development (the default) allows the local sandbox for any provider."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


# The local sandbox (devstack, tests): its URL and bearer token are the sandbox provider's
# defaults, and nothing else's.
SANDBOX_BASE_URL = "http://127.0.0.1:8100"
SANDBOX_TOKEN = "sandbox-token"
# Partner Center's API and Azure AD's sign-in (the authority is this + our partner tenant).
PARTNER_CENTER_BASE_URL = "https://api.partnercenter.microsoft.com"
AZURE_AD_LOGIN = "https://login.microsoftonline.com"
# The partner tenant the examples and the sandbox use: never a real partner's.
EXAMPLE_PARTNER_TENANT_ID = "00000000-0000-0000-0000-00000000a5e0"
# Domains reserved for examples and tests (RFC 2606, RFC 6761) and this project's own example
# domain: an address there must never be a production sender or recipient.
_EXAMPLE_TLDS = frozenset({"example", "test", "invalid", "localhost"})
_EXAMPLE_LABEL = "example"


def is_example_address(address: str) -> bool:
    """True for e-mail addresses at example or test domains (marketplace.example.mx, a.test)."""
    match = re.search(r"@([^>\s]+)", address)
    if match is None:
        return False
    labels = match.group(1).lower().rstrip(".").split(".")
    return labels[-1] in _EXAMPLE_TLDS or _EXAMPLE_LABEL in labels


def is_local_url(url: str) -> bool:
    """True for URLs that point at this machine (the sandbox) rather than a provider."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _secret(value: SecretStr | None) -> str | None:
    """A secret setting's value for the "is it set" check (an empty one is not)."""
    return value.get_secret_value() if value is not None else None


def _int_list(value: object) -> object:
    if isinstance(value, str):
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    return value


# The worker's event loop (temporalutil/event_loop.py).
EventLoop = Literal["uvloop", "asyncio"]


class Settings(BaseSettings):
    # hide_input_in_errors: a refused configuration must not print the secrets it was given.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    # Run workflow code in the SDK's strict sandbox (temporalutil/sandbox.py): a run-time guard
    # against non-deterministic workflow code, at 15-20% more worker CPU per order. The tests
    # and replays always run it.
    workflow_sandbox: bool = False
    # The worker's event loop (temporalutil/event_loop.py): uvloop, or asyncio's own.
    event_loop: EventLoop = "uvloop"
    # Payload encryption (temporalutil/codec.py): comma-separated keys, the first encrypts.
    # Unset: payloads are stored as plain JSON (the local stack's default).
    payload_encryption_keys: Annotated[list[SecretStr], NoDecode] = []
    codec_server_port: int = 8081
    codec_cors_origins: Annotated[list[str], NoDecode] = [
        "http://localhost:8233",
        "http://127.0.0.1:8233",
    ]
    codec_auth_token: SecretStr | None = None  # required Authorization header, when set
    # A TLS connection (Temporal Cloud, or a self-hosted frontend behind TLS). The names are the
    # Temporal CLI's and SDK environment configuration's, so `temporal` reads the same ones.
    # TEMPORAL_TLS unset: on when a client certificate or an API key is set.
    temporal_tls: bool | None = None
    temporal_tls_client_cert_path: Path | None = None  # mTLS: the client certificate (PEM)
    temporal_tls_client_key_path: Path | None = None  # ... and its private key (PEM)
    temporal_tls_server_ca_cert_path: Path | None = None  # a private CA; unset: system roots
    temporal_tls_server_name: str | None = None  # SNI/verification name, when not the host
    # Temporal Cloud API key (sent as a bearer token; needs TLS, which it turns on).
    temporal_api_key: SecretStr | None = None

    # Storage
    database_url: str = f"sqlite:///{DATA_DIR / 'csp.db'}"
    # Fernet key for secrets at rest (tenant admin passwords). When unset, a key is generated
    # once into secrets_key_file (development only; production sets SECRETS_KEY).
    secrets_key: SecretStr | None = None
    secrets_key_file: Path = DATA_DIR / "secrets.key"

    # development | production (production refuses sandbox URLs, tokens and example addresses)
    deployment: Deployment = Deployment.DEVELOPMENT

    # Provider: sandbox (the local sandbox's Partner Center face), partner_center, or ingram
    # (Ingram Micro's Xvantage API). PROVIDER_BASE_URL defaults to the sandbox for `sandbox`
    # and to Partner Center's API for `partner_center`; ingram must name its own (devstack
    # points it at the local sandbox).
    provider: ProviderKind = ProviderKind.SANDBOX
    provider_base_url: str | None = None
    # The sandbox's static bearer token (PROVIDER=sandbox only; it defaults to the sandbox's).
    # Partner Center itself takes no static token: it signs in with PARTNER_CENTER_*.
    provider_api_key: SecretStr | None = None
    provider_timeout_seconds: float = 30.0
    # A PEM file of CAs to trust for the provider's https URLs and its sign-in (unset: the
    # system's): the sandbox's own CA when it serves https, or a TLS-inspecting proxy's.
    provider_ca_bundle: Path | None = None

    # Partner Center App+User sign-in (PROVIDER=partner_center): an Azure AD app (client id
    # and secret) and a refresh token a partner user (with MFA) consented once; MSAL exchanges
    # it for access tokens. The authority defaults to Azure AD's for our partner tenant.
    partner_center_client_id: str | None = None
    partner_center_client_secret: SecretStr | None = None
    partner_center_refresh_token: SecretStr | None = None
    partner_center_authority: str | None = None
    # Our (the marketplace's) partner identifiers, sent as reseller of record.
    partner_tenant_id: str = EXAMPLE_PARTNER_TENANT_ID
    partner_mpn_id: str = "6543210"

    # Ingram Micro Xvantage (PROVIDER=ingram): OAuth2 client credentials, our Ingram customer
    # number (IM-CustomerNumber), the country (IM-CountryCode) and our sender id (IM-SenderID).
    ingram_client_id: str | None = None
    ingram_client_secret: SecretStr | None = None
    ingram_customer_number: Annotated[str | None, Field(max_length=10)] = None
    ingram_country_code: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "MX"
    ingram_sender_id: Annotated[str, Field(min_length=1, max_length=32)] = "csp-orchestrator"
    # Ingram's own Microsoft partner tenant: the indirect provider the client accepts beside us
    # (it goes into the invitation link, with PARTNER_TENANT_ID and PARTNER_MPN_ID).
    ingram_tenant_id: str = "00000000-0000-0000-0000-0000000019a0"

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
    # How long after the monthly cycle starts a renewal it begins (RenewalPolicy.opening_delay):
    # long enough for the whole fan-out to be started first.
    renewal_opening_delay_seconds: Annotated[
        int, Field(ge=0, le=int(MAX_OPENING_DELAY.total_seconds()))
    ] = 300

    # HTTP API (`python -m http_api`; `make run` starts it). Each key's rate limit: a token
    # bucket per key id of API_RATE_LIMIT_PER_MINUTE (a key's own rate when it was made with
    # one), holding at most API_RATE_LIMIT_BURST requests at once.
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    api_rate_limit_per_minute: Annotated[int, Field(ge=1)] = 120
    api_rate_limit_burst: Annotated[int, Field(ge=1)] = 20
    # Idempotency-Keys (and webhook events' dedupe) are remembered this long, then forgotten
    # by the API's hourly clean-up: a repeat after that is a new request.
    idempotency_key_retention_days: Annotated[int, Field(ge=1)] = 30
    # Webhooks in (http_api/webhooks): Ingram's shared secret (x-hub-signature; unset: Ingram's
    # events are refused), the hosts (host or host:port) whose certificate URL a Partner Center
    # event may name (https only; the dev stack adds the sandbox's own http host), and how old
    # (or how far in the future) an Ingram event may be, in seconds.
    ingram_webhook_secret: SecretStr | None = None
    partner_center_webhook_cert_hosts: Annotated[list[str], NoDecode] = [
        "api.partnercenter.microsoft.com"
    ]
    webhook_max_age: Annotated[int, Field(ge=1)] = 3600
    webhook_max_skew: Annotated[int, Field(ge=0)] = 300

    # Logging
    log_level: str = "INFO"
    log_json: bool = False

    # Metrics: the worker's Prometheus endpoint, host:port (empty: none). In a container,
    # 0.0.0.0:9464 so Prometheus can reach it.
    metrics_address: str | None = "127.0.0.1:9464"

    @field_validator("metrics_address", mode="before")
    @classmethod
    def _metrics_address(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value or value.lower() in ("off", "none", "false", "0"):
                return None
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("must be host:port, e.g. 127.0.0.1:9464 (empty turns it off)")
        return value

    @model_validator(mode="after")
    def _temporal_tls_complete(self) -> Self:
        cert, key = self.temporal_tls_client_cert_path, self.temporal_tls_client_key_path
        if (cert is None) != (key is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together: "
                "set both (mTLS) or neither"
            )
        if self.temporal_api_key is not None and self.temporal_tls is False:
            raise ValueError("TEMPORAL_API_KEY needs TLS: unset TEMPORAL_TLS or set it to true")
        return self

    @property
    def temporal_uses_tls(self) -> bool:
        if self.temporal_tls is not None:
            return self.temporal_tls
        return bool(self.temporal_tls_client_cert_path or self.temporal_api_key)

    @model_validator(mode="after")
    def _provider_configured(self) -> Self:
        """The chosen provider has what it needs, or nothing starts: every missing setting is
        named, by its environment variable."""
        if self.provider is ProviderKind.SANDBOX:
            self.provider_base_url = self.provider_base_url or SANDBOX_BASE_URL
            self.provider_api_key = self.provider_api_key or SecretStr(SANDBOX_TOKEN)
        if self.provider is ProviderKind.PARTNER_CENTER:
            self.provider_base_url = self.provider_base_url or PARTNER_CENTER_BASE_URL
            self.partner_center_authority = (
                self.partner_center_authority or f"{AZURE_AD_LOGIN}/{self.partner_tenant_id}"
            )
            if self.provider_api_key and self.provider_api_key.get_secret_value():
                raise ValueError(
                    "PROVIDER=partner_center takes no PROVIDER_API_KEY (a static token is the "
                    "sandbox's only): unset it, and set PARTNER_CENTER_CLIENT_ID, "
                    "PARTNER_CENTER_CLIENT_SECRET and PARTNER_CENTER_REFRESH_TOKEN"
                )
        required: dict[str, object] = {"PROVIDER_BASE_URL": self.provider_base_url}
        if self.provider is ProviderKind.PARTNER_CENTER:
            required |= {
                "PARTNER_CENTER_CLIENT_ID": self.partner_center_client_id,
                "PARTNER_CENTER_CLIENT_SECRET": _secret(self.partner_center_client_secret),
                "PARTNER_CENTER_REFRESH_TOKEN": _secret(self.partner_center_refresh_token),
            }
        if self.provider is ProviderKind.INGRAM:
            required |= {
                "INGRAM_CLIENT_ID": self.ingram_client_id,
                "INGRAM_CLIENT_SECRET": self.ingram_client_secret,
                "INGRAM_CUSTOMER_NUMBER": self.ingram_customer_number,
            }
        missing = [name for name, value in required.items() if not value]
        if missing:
            raise ValueError(
                f"PROVIDER={self.provider.value} is not configured: set {', '.join(missing)}"
            )
        if self.deployment is Deployment.PRODUCTION:
            self._production_guard()
        return self

    def _production_guard(self) -> None:
        """Sandbox URLs, tokens and example addresses never reach production unnoticed."""
        problems = []
        if self.provider is ProviderKind.SANDBOX:
            problems.append("PROVIDER=sandbox (use partner_center or ingram)")
        url = self.provider_base_url or ""
        if is_local_url(url) or urlsplit(url).scheme != "https":
            problems.append(f"PROVIDER_BASE_URL={url} is not a provider's https URL")
        if self.provider_api_key and self.provider_api_key.get_secret_value() == SANDBOX_TOKEN:
            problems.append("PROVIDER_API_KEY is the sandbox token")
        if self.provider is ProviderKind.PARTNER_CENTER:
            authority = self.partner_center_authority or ""
            if is_local_url(authority) or urlsplit(authority).scheme != "https":
                problems.append(f"PARTNER_CENTER_AUTHORITY={authority} is not Azure AD's")
            if self.partner_tenant_id == EXAMPLE_PARTNER_TENANT_ID:
                problems.append(f"PARTNER_TENANT_ID={self.partner_tenant_id} is the example")
        for name, address in (("MAIL_FROM", self.mail_from), ("OPS_EMAIL", self.ops_email)):
            if is_example_address(address):
                problems.append(f"{name}={address} is an example address")
        if problems:
            raise ValueError("DEPLOYMENT=production refuses: " + "; ".join(problems))

    @property
    def provider_url(self) -> str:
        """PROVIDER_BASE_URL, which validation guarantees is set."""
        assert self.provider_base_url is not None
        return self.provider_base_url

    @property
    def authority_is_local(self) -> bool:
        """The sign-in authority is the local sandbox's (MSAL's instance check is then off;
        production refuses such an authority)."""
        return is_local_url(self.partner_center_authority or "")

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

    @field_validator(
        "payload_encryption_keys",
        "codec_cors_origins",
        "partner_center_webhook_cert_hosts",
        mode="before",
    )
    @classmethod
    def _split_text(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
