"""What the routes talk to: Temporal (connected on first use, so the API starts, and answers
503, while Temporal is down), the registry, the settings and the rate limiter."""

from __future__ import annotations

import asyncio

from fastapi import Request
from temporalio.client import Client
from temporalio.runtime import Runtime

from csp_core.registry import Registry
from csp_core.settings import Settings
from http_api.ratelimit import RateLimiter
from temporalutil.client import connect


class Backends:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        client: Client | None = None,
        limiter: RateLimiter | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.settings = settings
        self._runtime = runtime
        self.registry = registry
        self.limiter = limiter or RateLimiter()
        self._client = client
        self._connecting = asyncio.Lock()

    async def client(self) -> Client:
        """The Temporal client; TemporalUnreachable (503) while Temporal cannot be reached."""
        if self._client is None:
            async with self._connecting:
                if self._client is None:
                    self._client = await connect(self.settings, runtime=self._runtime)
        return self._client


def backends(request: Request) -> Backends:
    return request.app.state.backends
