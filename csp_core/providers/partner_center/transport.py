"""The Partner Center wire: one pooled httpx client, the documented headers, errors, logs.

Every call carries `MS-Contract-Version: v1` (required by Partner Center), a fresh
`MS-CorrelationId`, `X-Locale`, and, for writes, the caller's `MS-RequestId` so a retried
logical request is done once. A 401 renews the token once (App+User tokens) and resends the
same request; a static token's 401 stays a 401. Logs carry method, path, status, correlation
and request ids and latency only: bodies hold generated admin passwords, tokens never appear.
"""

from __future__ import annotations

import ssl
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog

from csp_core.providers.partner_center.auth import TokenSource
from csp_core.providers.pool import pooled_transport
from csp_core.providers.port import ProviderError

log = structlog.get_logger("csp_core.providers.partner_center")

LOCALE = "es-MX"
CONTRACT_VERSION = "v1"
_MAX_DESCRIPTION = 300


def seg(value: str) -> str:
    """Quote one path segment (tenant ids, domains) so input can never change the path."""
    return quote(value, safe="")


def sub_request_id(request_id: str, step: str) -> str:
    """The MS-RequestId of one step of a logical request (cart, checkout, agreement...).

    Partner Center wants a new MS-RequestId for each call once an answer came back, and the
    same one when a call is retried: derived from the logical request, every retry of the
    whole operation sends the same id for the same step."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"partner-center:{request_id}:{step}"))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delta-seconds, or (rarely) an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(method: str, path: str, response: httpx.Response) -> ProviderError:
    """Build a ProviderError from a Partner Center error answer: {code, description}.

    The gateway (throttling, auth) answers {statusCode, message} instead; both are read.
    Only the code and a bounded description are kept: never the request or other fields.
    """
    code: str | None = None
    description: str | None = None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code", body.get("errorCode"))
        code = str(raw_code) if raw_code not in (None, "") else None
        raw_desc = body.get("description", body.get("message"))
        if isinstance(raw_desc, str) and raw_desc:
            description = raw_desc[:_MAX_DESCRIPTION]
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    message = f"Partner Center {method} {path} answered {response.status_code}"
    if code:
        message += f" [{code}]"
    if description:
        message += f": {description}"
    return ProviderError(
        message, status=response.status_code, code=code, retry_after_seconds=retry_after
    )


def tls_verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """httpx's verify: the system's CAs, or those of a PEM bundle (the sandbox's own CA)."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


class PartnerCenterTransport:
    """The calls every part of the client makes; one pooled httpx.AsyncClient per instance."""

    def __init__(
        self,
        base_url: str,
        auth: TokenSource,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._auth = auth
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport or pooled_transport(verify),
            headers={
                "Accept": "application/json",
                "X-Locale": LOCALE,
                "MS-Contract-Version": CONTRACT_VERSION,
            },
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
        request_id: str | None = None,
        if_match: str | None = None,
        ok_404: bool = False,
    ) -> httpx.Response:
        """Send one call; raise ProviderError for anything but 2xx (and 404 when ok_404)."""
        token = await self._auth.bearer()
        call = (method, path, params, body, request_id, if_match)
        response = await self._send(*call, token)
        if response.status_code == 401 and self._auth.renewable:
            # Expired or revoked early: renew once and resend the same request (same
            # MS-RequestId), so an expiring token never reads as a refusal of the business.
            log.info("partner_center.token_rejected", method=method, path=path)
            response = await self._send(*call, await self._auth.renew(token))
        if response.is_success or (ok_404 and response.status_code == 404):
            return response
        raise error_from_response(method, path, response)

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str | int] | None,
        body: dict[str, Any] | None,
        request_id: str | None,
        if_match: str | None,
        token: str,
    ) -> httpx.Response:
        correlation_id = str(uuid.uuid4())
        headers = {
            # Set per call, not as a client default, so it never shows in client reprs.
            "Authorization": f"Bearer {token}",
            "MS-CorrelationId": correlation_id,
        }
        if request_id is not None:
            headers["MS-RequestId"] = request_id
        if if_match is not None:
            headers["If-Match"] = if_match
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, path, params=params, json=body, headers=headers
            )
        except httpx.TransportError as exc:
            log.warning(
                "partner_center.transport_error",
                method=method,
                path=path,
                error=type(exc).__name__,
                correlation_id=correlation_id,
                request_id=request_id,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            # Deliberately no str(exc): keep the message to the failure kind.
            raise ProviderError(
                f"Partner Center {method} {path} unreachable: {type(exc).__name__}",
                status=503,
                code=type(exc).__name__,
            ) from None
        log.info(
            "partner_center.call",
            method=method,
            path=path,
            status=response.status_code,
            correlation_id=correlation_id,
            request_id=request_id,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    @staticmethod
    def _json(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                f"Partner Center {method} {path} answered {response.status_code} "
                "with a body that is not a JSON object",
                status=502,
                code="InvalidResponse",
            )
        return data

    async def _get_json(
        self, path: str, params: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        response = await self._request("GET", path, params=params)
        return self._json(response, "GET", path)

    async def _post_json(
        self, path: str, body: dict[str, Any] | None, *, request_id: str | None
    ) -> dict[str, Any]:
        response = await self._request("POST", path, body=body, request_id=request_id)
        return self._json(response, "POST", path)


__all__ = [
    "CONTRACT_VERSION",
    "LOCALE",
    "PartnerCenterTransport",
    "error_from_response",
    "parse_retry_after",
    "seg",
    "sub_request_id",
    "tls_verify",
]
