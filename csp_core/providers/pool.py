"""The HTTP connection pool of every provider adapter (one per adapter instance)."""

import httpx

# As many keep-alive slots as connections: with fewer (httpx keeps 20 of 100 by default) a
# burst of orders closes and reopens connections on every request beyond the 20th, and the
# pool walks every connection it holds for each request. 32 covers a worker's usual
# concurrency; more requests wait for a free connection (within the client's timeout). An idle
# connection is dropped after 4 s, before servers close theirs (uvicorn, many proxies: 5 s):
# reusing one the server just closed fails the request (RemoteProtocolError, then a retry).
POOL_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=4)
