"""The FastAPI app: routes per capability, API keys, problem details, and its backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from temporalio.client import Client

from csp_core.orders.models import Order
from csp_core.providers.port import Provider
from csp_core.registry import Registry
from csp_core.settings import Settings, get_settings
from http_api import idempotency, orders, problems, renewals, subscriptions, webhooks
from http_api.backends import Backends
from http_api.ratelimit import RateLimiter
from temporalutil.metrics import ProcessMetrics

DESCRIPTION = """\
Orders, licenses, subscriptions and renewal payments of the CSP marketplace, for order systems
(the marketplace's e-commerce and ERP) and ops.

**Auth:** `Authorization: Bearer <key>`, a key from `csp apikey create --reseller <id>` (sees
that reseller's orders, licenses and subscriptions only; anything else is 404) or `--ops`.
Each key has a rate limit (429 with `Retry-After`).

**Refusals** are RFC 9457 problem details (`application/problem+json`): `detail` says why and
what to do instead; 422 lists each field and its rule in `errors`.

**Idempotency:** the same order (by `order_id`) gets the same answer; payments and subscription
changes take an `Idempotency-Key` header (the same key again returns the first answer).

**Webhooks** (`/v1/webhooks/...`): providers' events, signed instead of keyed (see README).
"""


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    registry: Registry | None = None,
    limiter: RateLimiter | None = None,
    metrics: ProcessMetrics | None = None,
    provider: Provider | None = None,
) -> FastAPI:
    """The API. Without `client`, it connects to Temporal on first use (from settings); without
    `registry`, it opens (and migrates) the settings' database at startup. With `metrics`, it
    serves them at /metrics (no key: bind the API where only the scraper and callers reach it)
    and its Temporal client reports into them."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = registry is None
        opened = registry or await asyncio.to_thread(Registry.from_settings, settings)
        runtime = metrics.runtime if metrics is not None else None
        app.state.backends = Backends(settings, opened, client, limiter, runtime, provider)
        retention = timedelta(days=settings.idempotency_key_retention_days)
        clean_up = asyncio.create_task(idempotency.forget_expired_keys(opened, retention))
        try:
            yield
        finally:
            clean_up.cancel()
            await app.state.backends.aclose()
            if owned:
                opened.dispose()

    app = FastAPI(
        title="csp-orchestrator API",
        version="1",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(orders.router)
    app.include_router(subscriptions.router)
    app.include_router(renewals.router)
    app.include_router(webhooks.router)
    if metrics is not None:
        app.mount("/metrics", metrics.asgi_app())

    @app.get("/healthz", tags=["health"], summary="Liveness (no key needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": problems.TYPE_PREFIX + "refused"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "The reason, and what to do instead."},
        "instance": {"type": "string"},
        "code": {"type": "string", "description": "The workflow's refusal type, if any."},
        "errors": {
            "type": "array",
            "description": "422: each field and the rule it breaks.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "rule": {"type": "string"}},
            },
        },
    },
}
PROBLEM_CONTENT = {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
KEYED_REFUSALS = {
    "401": "No valid API key (WWW-Authenticate: Bearer).",
    "429": "This key's rate limit is reached (Retry-After).",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the order's schema (validated by parse_order, not by FastAPI) and
    problem details as every error's body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    order = Order.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(order.pop("$defs", {}))
    components["Order"] = order
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path in schema["paths"].values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "security" in operation:
                for status, description in KEYED_REFUSALS.items():
                    responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = PROBLEM_CONTENT
                    if status == "422":
                        response["description"] = "Invalid input: each field and its rule."
    app.openapi_schema = schema
    return schema
