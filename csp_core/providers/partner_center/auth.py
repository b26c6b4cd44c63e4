"""Bearer tokens for the Partner Center client.

Two sources:
- `StaticToken`: one fixed bearer token. Only the local sandbox accepts such a thing (its
  PROVIDER_API_KEY); it cannot be renewed, so a 401 stays a 401.
- `AppUserToken`: Partner Center's App+User authentication (the Secure Application Model). A
  refresh token, consented once by a partner user with MFA, is exchanged with MSAL
  (`ConfidentialClientApplication.acquire_token_by_refresh_token`) for an access token for the
  Partner Center resource. The access token is cached, renewed before it expires, and renewed
  once more when Partner Center answers 401 (revoked, or expired early): a token that expires
  mid-run never surfaces as a refusal of the business request. Azure AD may rotate the refresh
  token; the newest one is kept (in memory: the configured one stays valid for its lifetime).

MSAL is synchronous (requests): its calls run in a thread, one at a time per token source.
MSAL also discovers the authority's endpoints on first use (OpenID configuration) and, for
hosts it does not know, asks login.microsoftonline.com whether the instance is valid; the
sandbox's own authority (a local https URL) is used with that instance check off
(`validate_authority=False`, `instance_discovery=False`), which settings allow only outside
production.

Secrets (client secret, refresh token, access tokens) are held as SecretStr or private
attributes and never logged; MSAL's error descriptions are kept to a bounded length.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Protocol

import requests
import structlog
from pydantic import SecretStr

from csp_core.providers.port import ProviderError

log = structlog.get_logger(__name__)

# The Partner Center API as an Azure AD resource (v2 ".default" scope of
# https://api.partnercenter.microsoft.com, the resource the Secure Application Model names).
PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/.default"
# Renew this long before the token's expiry (a tenth of its lifetime when that is shorter).
RENEW_MARGIN_SECONDS = 300.0
# Azure AD errors that no retry fixes: the credentials or the consent must be renewed.
_PERMANENT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "invalid_request"}
)
_MAX_DESCRIPTION = 200


class TokenSource(Protocol):
    @property
    def renewable(self) -> bool: ...

    async def bearer(self) -> str:
        """An access token to send now."""

    async def renew(self, rejected: str) -> str:
        """A new access token after `rejected` was answered 401 (or the same error again)."""


class StaticToken:
    """A fixed bearer token: the local sandbox's PROVIDER_API_KEY."""

    renewable = False

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def bearer(self) -> str:
        return self._token.get_secret_value()

    async def renew(self, rejected: str) -> str:
        return rejected


class AppUserToken:
    """App+User access tokens from a refresh token, through MSAL (see the module docstring)."""

    renewable = True

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr,
        scope: str = PARTNER_CENTER_SCOPE,
        validate_authority: bool = True,
        verify: str | bool = True,
        timeout: float = 30.0,
    ) -> None:
        self._authority = authority.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._scope = scope
        self._validate_authority = validate_authority
        self._verify = verify
        self._timeout = timeout
        self._app: Any = None  # msal.ConfidentialClientApplication, built on first use
        self._access_token: str | None = None
        self._renew_at = 0.0  # monotonic
        self._lock = asyncio.Lock()
        self.acquired = 0  # tokens obtained so far (tests, logs)

    def __repr__(self) -> str:
        return f"AppUserToken(authority={self._authority!r}, client_id={self._client_id!r})"

    async def bearer(self) -> str:
        token = self._access_token
        if token is not None and time.monotonic() < self._renew_at:
            return token
        async with self._lock:
            # Another caller may have renewed it while this one waited.
            if self._access_token is not None and time.monotonic() < self._renew_at:
                return self._access_token
            return await self._acquire("expiring" if token else "first")

    async def renew(self, rejected: str) -> str:
        async with self._lock:
            if self._access_token is not None and self._access_token != rejected:
                return self._access_token  # renewed meanwhile by another caller
            return await self._acquire("rejected")

    async def _acquire(self, why: str) -> str:
        result = await asyncio.to_thread(self._exchange)
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            raise _sign_in_error(result)
        lifetime = _seconds(result.get("expires_in"), default=3599.0)
        self._access_token = token
        self._renew_at = time.monotonic() + lifetime - min(RENEW_MARGIN_SECONDS, lifetime / 10)
        if rotated := result.get("refresh_token"):
            self._refresh_token = SecretStr(str(rotated))
        self.acquired += 1
        log.info("partner_center.token_acquired", reason=why, expires_in_s=round(lifetime))
        return token

    def _exchange(self) -> dict[str, Any]:
        """In a worker thread: the MSAL call (and, the first time, the authority's discovery)."""
        try:
            if self._app is None:
                self._app = self._build_app()
            result = self._app.acquire_token_by_refresh_token(
                self._refresh_token.get_secret_value(), scopes=[self._scope]
            )
        except ValueError as err:
            # MSAL: the authority is unusable (wrong tenant, not https, unknown instance).
            raise ProviderError(
                f"Partner Center sign-in: the authority {self._authority} is unusable "
                f"({_bounded(str(err))})",
                status=401,
                code="AuthorityInvalid",
            ) from None
        except Exception as err:  # requests' connection errors, timeouts, 5xx
            raise ProviderError(
                f"Partner Center sign-in unreachable: {type(err).__name__}",
                status=503,
                code=type(err).__name__,
            ) from None
        return result if isinstance(result, dict) else {}

    def _build_app(self) -> Any:
        import msal  # imported here: only PROVIDER=partner_center needs it loaded

        http_client = None
        if isinstance(self._verify, str):
            # requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle: MSAL gets
            # a session that keeps the bundle it was given (PROVIDER_CA_BUNDLE).
            http_client = _BundleSession(self._verify)
            http_client.request = functools.partial(http_client.request, timeout=self._timeout)
        return msal.ConfidentialClientApplication(
            self._client_id,
            client_credential=self._client_secret.get_secret_value(),
            authority=self._authority,
            validate_authority=self._validate_authority,
            instance_discovery=self._validate_authority,
            verify=self._verify,
            timeout=self._timeout,
            http_client=http_client,
        )


class _BundleSession(requests.Session):
    """A requests session whose CA bundle the environment cannot replace."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.verify = ca_bundle

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(*args, **kwargs)
        settings["verify"] = self.verify
        return settings


def _seconds(value: Any, *, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def _bounded(text: str) -> str:
    return text.splitlines()[0][:_MAX_DESCRIPTION] if text else ""


def _sign_in_error(result: dict[str, Any]) -> ProviderError:
    """Azure AD's refusal: permanent for bad credentials or consent, else worth retrying."""
    error = str(result.get("error") or "no_access_token")
    description = _bounded(str(result.get("error_description") or ""))
    message = f"Partner Center sign-in refused ({error})"
    if description:
        message += f": {description}"
    if error in _PERMANENT_ERRORS:
        message += (
            "; check PARTNER_CENTER_CLIENT_ID, PARTNER_CENTER_CLIENT_SECRET and "
            "PARTNER_CENTER_REFRESH_TOKEN (a partner user must consent again when it expired)"
        )
        return ProviderError(message, status=401, code=error)
    return ProviderError(message, status=503, code=error)


__all__ = [
    "PARTNER_CENTER_SCOPE",
    "AppUserToken",
    "StaticToken",
    "TokenSource",
]
