"""The wire to Ingram: one pooled httpx.AsyncClient, Ingram's headers on every call
(IM-CustomerNumber, IM-CountryCode, IM-SenderID, IM-CorrelationID), the bearer token, and the
mapping of transport failures and error answers to ProviderError."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from csp_core.providers.pool import pooled_transport
from csp_core.providers.port import ProviderError
from csp_core.providers.xvantage.auth import TOKEN_PATH, TokenCache
from csp_core.providers.xvantage.errors import answer_error

log = structlog.get_logger(__name__)


class XvantageWire:
    def __init__(
        self,
        base_url: str,
        *,
        tokens: TokenCache,
        headers: dict[str, str],
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._tokens = tokens
        self._headers = headers
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport or pooled_transport(),
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        correlation: str | None,
        token: SecretStr | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(self._headers)
        headers["IM-CorrelationID"] = correlation or uuid.uuid4().hex
        if token is not None:
            # Set per call, never as a client default, so it never shows in client reprs.
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            log.warning(
                "xvantage.transport_error",
                method=method,
                path=path,
                error=type(exc).__name__,
                correlation_id=headers["IM-CorrelationID"],
            )
            # Timeouts and dropped connections are outages: retried (no str(exc): no payloads).
            raise ProviderError(
                f"Ingram {method} {path} unreachable: {type(exc).__name__}",
                status=503,
                code=type(exc).__name__,
            ) from None
        log.info(
            "xvantage.call",
            method=method,
            path=path,
            status=response.status_code,
            correlation_id=headers["IM-CorrelationID"],
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    async def _send_token_form(self, form: dict[str, str]) -> httpx.Response:
        return await self._send("POST", TOKEN_PATH, data=form, correlation=None)

    async def call(
        self, method: str, path: str, *, correlation: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One API call with a valid token: a 401 renews the token and tries once more, so a
        token that expired mid-run never reads as a refusal."""
        token = await self._tokens.token(self._send_token_form)
        response = await self._send(method, path, correlation=correlation, token=token, **kwargs)
        if response.status_code == 401:
            log.info("xvantage.token_refused", path=path)
            token = await self._tokens.token(self._send_token_form, stale=token)
            response = await self._send(
                method, path, correlation=correlation, token=token, **kwargs
            )
        if response.status_code == 204 or response.is_success:
            return response
        raise answer_error(method, path, response)
