"""What the routes talk to: Temporal (connected on first use, so the API starts, and answers
503, while Temporal is down), the registry, the settings and the rate limiter."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from temporalio.client import Client
from temporalio.runtime import Runtime

from csp_core.providers.factory import build_provider
from csp_core.providers.port import Provider
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
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self._runtime = runtime
        self.registry = registry
        self.limiter = limiter or RateLimiter()
        self._client = client
        self._connecting = asyncio.Lock()
        # Webhooks: the provider (who a tenant id is).
        self._provider = provider
        self._owned_provider: Any = None

    async def provider(self) -> Provider:
        """The provider adapter PROVIDER selects (built on first use; closed by `aclose`)."""
        if self._provider is None:
            self._owned_provider = self._provider = build_provider(self.settings)
        return self._provider

    async def aclose(self) -> None:
        if self._owned_provider is not None:
            await self._owned_provider.aclose()

    async def client(self) -> Client:
        """The Temporal client; TemporalUnreachable (503) while Temporal cannot be reached."""
        if self._client is None:
            async with self._connecting:
                if self._client is None:
                    self._client = await connect(self.settings, runtime=self._runtime)
        return self._client


def backends(request: Request) -> Backends:
    return request.app.state.backends
