"""Faults a test puts into real parts: a registry whose database goes away, and a provider
conversation whose answer is lost after the provider committed the write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import create_engine

from csp_core.providers.pool import pooled_transport
from csp_core.registry import Registry


class RegistryOutage:
    """Points a live Registry at a database that cannot be opened (the driver's own error,
    sqlite3.OperationalError), and back. Every thread's next call sees the switch."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._saved = (registry.engine, registry._writer)
        self._down = create_engine("sqlite:////nonexistent-registry-outage/csp.db")
        self.active = False

    def begin(self) -> None:
        self.registry.engine = self._down
        self.registry._writer = self._down.execution_options(csp_write=True)
        self.active = True

    def end(self) -> None:
        self.registry.engine, self.registry._writer = self._saved
        self.active = False

    @contextmanager
    def during(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()


class ProviderWire(httpx.AsyncBaseTransport):
    """The real HTTP transport to the provider, with hooks a test sets: after a matching
    request got its answer, `after` runs (e.g. the registry goes down), or the answer is
    dropped as a connection failure would drop it (`lose_next`)."""

    def __init__(self) -> None:
        self._inner = pooled_transport()  # the adapters' own
        self.lose: dict[tuple[str, str], int] = {}
        self.after: dict[tuple[str, str], Callable[[], None]] = {}
        self.request_ids: list[tuple[str, str, str | None]] = []

    def lose_next(self, method: str, path_suffix: str, times: int = 1) -> None:
        self.lose[(method, path_suffix)] = times

    def _match(self, table: dict, request: httpx.Request) -> tuple[str, str] | None:
        for method, suffix in table:
            if request.method == method and request.url.path.endswith(suffix):
                return method, suffix
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.request_ids.append(
            (request.method, request.url.path, request.headers.get("MS-RequestId"))
        )
        response = await self._inner.handle_async_request(request)
        if (key := self._match(self.after, request)) is not None:
            self.after.pop(key)()
        if (key := self._match(self.lose, request)) is not None and self.lose[key] > 0:
            self.lose[key] -= 1
            await response.aread()  # the provider committed and answered...
            await response.aclose()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
