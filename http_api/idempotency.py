"""The `Idempotency-Key` header of payments and subscription changes.

A repeated key returns the first answer, as it was (status and body, byte for byte, with
`Idempotent-Replayed: true`). The same key with a different request is refused with 422
(draft-ietf-httpapi-idempotency-key-header: the key was used for another payload), and nothing
is done. Keys are per scope: one subscription (where the key is also the Workflow Update's id,
so Temporal and the workflow dedupe it too), or payments.

Only an answer that did something is kept: a refusal (409) changed nothing, so the same key
asks again and gets today's answer (a subscription suspended then is active now). Without the
header a key is made up, and returned in the answer's `Idempotency-Key` header so the caller
can repeat the request.

A key is remembered for IDEMPOTENCY_KEY_RETENTION_DAYS (30 by default): the API forgets older
ones at start and every hour after.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi import Request, Response

from api.subscriptions import SubscriptionInputError, check_request_id, new_request_id
from csp_core.registry import Registry
from http_api.backends import Backends
from http_api.problems import Problem, invalid

HEADER = "Idempotency-Key"
CLEAN_UP_EVERY = timedelta(hours=1)
REPLAYED = "Idempotent-Replayed"  # set on an answer given before (the same request again)


def idempotency_key(request: Request) -> str:
    """The caller's key (checked: it becomes an Update id), or a new one."""
    given = request.headers.get(HEADER)
    if given is None:
        return new_request_id()
    try:
        return check_request_id(given, HEADER)
    except SubscriptionInputError as err:
        raise invalid([str(err)]) from None


def fingerprint(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def json_response(status: int, body: str, key: str, replayed: bool) -> Response:
    headers = {HEADER: key}
    if replayed:
        headers[REPLAYED] = "true"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def once(
    found: Backends,
    request: Request,
    scope: str,
    key: str,
    payload: dict[str, Any],
    run: Callable[[], Awaitable[tuple[dict[str, Any], bool]]],
) -> Response:
    """Answer `payload` under `key`: the stored first answer, a 422 for another payload, or
    `run()`'s (body, replayed) kept as 200 for the next time."""
    registry = found.registry
    described = f"{request.method} {request.url.path}"
    digest = fingerprint(payload)
    claim = await asyncio.to_thread(registry.claim_idempotency_key, scope, key, digest, described)
    if claim.fingerprint != digest:
        raise Problem(
            422,
            "idempotency-key-reused",
            f"{HEADER} {key} was first used for another request ({claim.request} with other "
            f"content, {claim.created_at:%Y-%m-%d %H:%M} UTC); nothing was done: use a new key "
            "for a new request, or repeat the first one exactly",
            errors=[{"field": HEADER, "rule": "already used for another request"}],
        )
    if claim.completed:
        assert claim.status_code is not None and claim.response is not None
        return json_response(claim.status_code, claim.response, key, replayed=True)
    body, replayed = await run()
    stored = await asyncio.to_thread(
        registry.complete_idempotency_key, scope, key, 200, json.dumps(body, separators=(",", ":"))
    )
    assert stored.status_code is not None and stored.response is not None
    return json_response(stored.status_code, stored.response, key, replayed)


async def forget_expired_keys(registry: Registry, retention: timedelta) -> None:
    """Forget keys older than their retention, now and every CLEAN_UP_EVERY (until cancelled).
    Replicas may each do it: a delete of what is already gone deletes nothing."""
    log = structlog.get_logger("idempotency")
    while True:
        try:
            before = datetime.now(UTC) - retention
            forgotten = await asyncio.to_thread(registry.prune_idempotency_keys, before)
            if forgotten:
                log.info("idempotency.keys_forgotten", count=forgotten, created_before=before)
        except Exception as err:  # the registry is away: try again at the next round
            log.warning("idempotency.clean_up_failed", error=str(err))
        await asyncio.sleep(CLEAN_UP_EVERY.total_seconds())
