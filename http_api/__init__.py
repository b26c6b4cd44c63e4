"""The HTTP API for order systems (FastAPI on uvicorn): `python -m http_api`, started by
`make run` on 127.0.0.1:8000, versioned under /v1, OpenAPI at /docs.

An entry point like the CLI (`cli/`), over the same client functions in `api/`: no rule is
implemented twice. app.py builds the app; auth.py (API keys, who sees what, rate limits),
problems.py (RFC 9457 refusals), idempotency.py (Idempotency-Key), and one module of routes
per capability: orders.py (orders, licenses), subscriptions.py, renewals.py (payments).
"""

from http_api.app import create_app

__all__ = ["create_app"]
