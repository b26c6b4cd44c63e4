"""The HTTP connection pool of every provider adapter (one per adapter instance).

The adapters speak httpx; the wire underneath is aiohttp's connection pool (httpx-aiohttp's
transport). httpx's own pool (httpcore) walks every connection it holds on each request and
response, asking the socket whether it is readable and who its peer is: with a busy worker's
dozens of kept-alive connections that was 40% of the event loop, and the same request costs
about a third of the CPU through aiohttp (`benchmarks/orders.py`; the README's Performance).
"""

from __future__ import annotations

import ssl

import httpx
from httpx_aiohttp import AiohttpTransport

# 32 connections cover a worker's usual concurrency; more requests wait for a free one (within
# the client's timeout). An idle connection is dropped after 4 s, before servers close theirs
# (uvicorn, many proxies: 5 s): reusing one the server just closed fails the request.
POOL_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=4)


def pooled_transport(verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    """The transport of a provider adapter's httpx client: aiohttp's pool, POOL_LIMITS."""
    return AiohttpTransport(verify=verify, limits=POOL_LIMITS)
