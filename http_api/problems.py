"""Every refusal as RFC 9457 problem details (`application/problem+json`), one shape:

    {"type": "tag:csp-orchestrator,2026:problem/<slug>", "title": "...", "status": 409,
     "detail": "<the reason and the way out>", "instance": "/v1/...",
     "code": "<the workflow's refusal type, when it gave one>",
     "errors": [{"field": "items.0.quantity", "rule": "..."}]}      (422 only)

`detail` carries the same sentence the CLI prints (reason, then what to do). Types are tag URIs
(RFC 4151), not links: they name the kind of refusal for clients to branch on. Each refusal is
logged (status, type, path, the API key's id), never with the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from temporalutil.client import TemporalUnreachable

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:csp-orchestrator,2026:problem/"
# How long a caller should wait before asking again when Temporal cannot be reached.
UNAVAILABLE_RETRY_AFTER_S = 5

log = structlog.get_logger("http_api")

TITLES = {
    "unauthorized": "No valid API key",
    "forbidden": "Not allowed for this API key",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "invalid-input": "Invalid input",
    "refused": "Refused",
    "order-conflict": "Order id already used for another order",
    "idempotency-key-reused": "Idempotency-Key already used for another request",
    "rate-limited": "Too many requests",
    "temporal-unavailable": "Temporal is unreachable",
    "internal": "Internal error",
    "unsigned-event": "The event is not signed",
    "bad-signature": "The event's signature does not match",
    "stale-event": "The event is too old, or from the future",
    "untrusted-certificate": "The event's signing certificate is not trusted",
    "certificate-unavailable": "The event's signing certificate cannot be fetched",
}


class Problem(Exception):
    """A refusal to send as problem details; raise it from any route or dependency."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        code: str | None = None,
        errors: Iterable[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        log_reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.code = code
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})
        self.log_reason = log_reason  # what the log says beyond the detail (never a secret)

    def body(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": TITLES[self.slug],
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.code:
            body["code"] = self.code
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid(problems: Iterable[str]) -> Problem:
    """422 from `field: rule` lines (the order validation's and the input checks' wording)."""
    return invalid_fields([_field_rule(line) for line in problems])


def invalid_fields(errors: list[dict[str, str]]) -> Problem:
    detail = "invalid input, nothing was done: " + "; ".join(
        f"{e['field']}: {e['rule']}" for e in errors
    )
    return Problem(422, "invalid-input", detail, errors=errors)


def _field_rule(line: str) -> dict[str, str]:
    field, sep, rule = line.partition(": ")
    return {"field": field, "rule": rule} if sep else {"field": "body", "rule": line}


# pydantic's error types, in the plain words the order validation uses.
_RULES = {
    "missing": "required, but missing",
    "extra_forbidden": "not a field of this request (check its spelling, or remove it)",
    "json_invalid": "not valid JSON",
    "model_attributes_type": "must be a JSON object {...}",
    "dict_type": "must be a JSON object {...}",
    "int_type": "must be a whole number (a JSON number, not text)",
    "int_parsing": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text (a JSON string)",
}


def _validation_errors(err: RequestValidationError) -> list[dict[str, str]]:
    found = []
    for error in err.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or where
        if where == "header":
            field = field.replace("_", "-").title()  # idempotency_key -> Idempotency-Key
        kind = str(error.get("type", ""))
        rule = _RULES.get(kind) or str(error.get("msg", "invalid"))
        if kind == "enum":
            rule = f"must be one of {error.get('ctx', {}).get('expected', '')}"
        found.append({"field": field, "rule": rule})
    return found


def key_id_of(request: Request) -> str | None:
    return getattr(request.state, "key_id", None)


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    fields = {
        "status": problem.status,
        "problem": problem.slug,
        "method": request.method,
        "path": request.url.path,
        "key_id": key_id_of(request),
    }
    if problem.code:
        fields["code"] = problem.code
    if problem.log_reason:
        fields["reason"] = problem.log_reason
    if problem.status >= 500:
        log.warning("request failed", **fields)
    else:
        log.info("request refused", **fields)
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def install(app: FastAPI) -> None:
    """Problem details for every error the app can answer with."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, invalid_fields(_validation_errors(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {
            401: "unauthorized",
            403: "forbidden",
            404: "not-found",
            405: "method-not-allowed",
        }.get(exc.status_code, "invalid-input" if exc.status_code < 500 else "internal")
        detail = str(exc.detail)
        if exc.status_code == 404:
            detail = f"no such resource: {request.url.path} (the API lives under /v1; see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        problem = Problem(exc.status_code, slug, detail, headers=exc.headers)
        return problem_response(request, problem)

    @app.exception_handler(TemporalUnreachable)
    async def _unreachable(request: Request, exc: TemporalUnreachable) -> JSONResponse:
        return problem_response(request, unavailable())

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, exc: RPCError) -> JSONResponse:
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return problem_response(request, unavailable())
        log.exception("temporal call failed", path=request.url.path, key_id=key_id_of(request))
        return problem_response(request, internal())

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path, key_id=key_id_of(request))
        return problem_response(request, internal())


def unavailable() -> Problem:
    return Problem(
        503,
        "temporal-unavailable",
        "Temporal cannot be reached right now; nothing was done: ask again in a few seconds",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


def internal() -> Problem:
    return Problem(
        500,
        "internal",
        "the request failed on our side (logged for ops); ask again later, with the same "
        "Idempotency-Key if you sent one",
    )
