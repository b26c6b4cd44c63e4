"""Ingram's OAuth2 client-credentials token (`/oauth/oauth20/token`): fetched with a POST form
(RFC 6749; the SDK's GET puts the client secret in the query string, where proxies and access
logs keep URLs), cached, renewed a minute before it expires, and renewed at once when Ingram
refuses it (a 401 in mid-run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import structlog
from pydantic import SecretStr
from xi.sdk.resellers.models import AccesstokenResponse

from csp_core.providers.port import ProviderError
from csp_core.providers.xvantage.errors import answer_error, parse_answer

log = structlog.get_logger(__name__)

TOKEN_PATH = "/oauth/oauth20/token"
# Renew the token this long before Ingram says it expires (clocks drift, calls take time).
TOKEN_MARGIN_SECONDS = 60.0

# Sends the token request: (form) -> Ingram's answer.
SendForm = Callable[[dict[str, str]], Awaitable[httpx.Response]]


class TokenCache:
    """One token for every call of a client; one fetch at a time."""

    def __init__(self, client_id: str, client_secret: SecretStr) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: SecretStr | None = None
        self._expires_at = 0.0  # time.monotonic()
        self._lock = asyncio.Lock()
        self.fetched = 0

    async def token(self, send: SendForm, *, stale: SecretStr | None = None) -> SecretStr:
        """The cached token, fetched again when it is (nearly) expired or was refused
        (`stale`: the token Ingram just refused)."""
        async with self._lock:
            fresh = self._token is not None and time.monotonic() < self._expires_at
            if fresh and (stale is None or self._token is not stale):
                assert self._token is not None
                return self._token
            form = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
            }
            response = await send(form)
            if not response.is_success:
                raise answer_error("POST", TOKEN_PATH, response)
            token = parse_answer(AccesstokenResponse, response, "POST", TOKEN_PATH)
            if not token.access_token:
                raise ProviderError(
                    "Ingram's token endpoint answered no access_token", status=502, code="NoToken"
                )
            lifetime = float(token.expires_in or 0) or 3600.0
            self._token = SecretStr(token.access_token)
            self._expires_at = time.monotonic() + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)
            self.fetched += 1
            log.info("xvantage.token_renewed", expires_in_s=lifetime)
            return self._token
