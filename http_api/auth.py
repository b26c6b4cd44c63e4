"""Who is calling: an API key per caller (`Authorization: Bearer cspk_...`), checked against
the registry's digest, then its rate limit.

A reseller's key sees and changes only that reseller's orders, licenses and subscriptions:
anything else is answered exactly as if it did not exist (404, never 403, so a reseller learns
nothing of other resellers' business). Ops keys see everything. What only ops do (confirming a
client's partner acceptance, recording payments, renewals) answers 403 to a reseller's key, for
every id alike.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from csp_core.registry import ApiKeyRecord, ApiKeyRefused
from http_api.backends import Backends, backends
from http_api.problems import Problem

BEARER = HTTPBearer(
    auto_error=False,
    description="An API key from `csp apikey create --reseller <id>` or `--ops`.",
)
CHALLENGE = 'Bearer realm="csp-orchestrator"'


@dataclass(frozen=True)
class Caller:
    key_id: str
    reseller_id: str | None  # None: an ops key

    @property
    def is_ops(self) -> bool:
        return self.reseller_id is None

    def sees(self, reseller_id: str | None) -> bool:
        """Whether this caller may see (and change) what belongs to `reseller_id`."""
        return self.is_ops or (reseller_id is not None and reseller_id == self.reseller_id)

    @classmethod
    def of(cls, record: ApiKeyRecord) -> Caller:
        return cls(key_id=record.key_id, reseller_id=record.reseller_id)


def _unauthorized(detail: str, reason: str, invalid: bool) -> Problem:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return Problem(
        401, "unauthorized", detail, headers={"WWW-Authenticate": challenge}, log_reason=reason
    )


async def authenticated(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(BEARER),
    found: Backends = Depends(backends),
) -> Caller:
    """The caller of a /v1 request, within its rate limit; 401 or 429 otherwise."""
    if credentials is None:
        raise _unauthorized(
            "no API key: send `Authorization: Bearer <key>` (ops make one with "
            "`csp apikey create --reseller <id>` or `--ops`)",
            "no bearer credentials",
            invalid=False,
        )
    try:
        record = await asyncio.to_thread(
            found.registry.authenticate_api_key, credentials.credentials
        )
    except ApiKeyRefused as refused:
        request.state.key_id = refused.key_id  # a well-formed key's id names it in the log
        raise _unauthorized(
            "the API key was not accepted (unknown, revoked or mistyped): use the key exactly "
            "as `csp apikey create` printed it, or ask ops for a new one",
            refused.reason,
            invalid=True,
        ) from None
    request.state.key_id = record.key_id
    settings = found.settings
    wait = found.limiter.take(
        record.key_id,
        record.rate_per_minute or settings.api_rate_limit_per_minute,
        settings.api_rate_limit_burst,
    )
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise Problem(
            429,
            "rate-limited",
            f"this API key's rate limit is reached: ask again in {seconds} s (Retry-After)",
            headers={"Retry-After": str(seconds)},
        )
    return Caller.of(record)


async def ops_only(caller: Caller = Depends(authenticated)) -> Caller:
    if not caller.is_ops:
        raise Problem(
            403,
            "forbidden",
            f"only ops do this: this key acts for reseller {caller.reseller_id}; ask the "
            "marketplace's operations team",
        )
    return caller
