"""The HTTP API served for real by uvicorn on a free port, in the test's event loop (where the
stack's worker runs, so both keep going while a test waits on an answer), and a client for it
that holds API keys made in the registry as `csp apikey create` makes them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from csp_core.registry import ApiKeyScope, Registry
from csp_core.settings import Settings
from http_api import create_app


@asynccontextmanager
async def serving(app: FastAPI, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Run `app` on uvicorn on 127.0.0.1 and a free port (or `sock`, bound already); yields
    its base URL."""
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A bounded graceful shutdown: a failed test can leave a request waiting on an Update that
    # the test server will never complete (its clock only moves when a test moves it).
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises why it could not start
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Api:
    """A caller of the API over HTTP; `as_reseller` / `as_ops` make keys and send them."""

    http: httpx.AsyncClient
    registry: Registry
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, reseller_id: str | None = None, rate_per_minute: int | None = None) -> str:
        scope = ApiKeyScope.RESELLER if reseller_id else ApiKeyScope.OPS
        made = self.registry.create_api_key(scope, reseller_id, rate_per_minute=rate_per_minute)
        return made.key.get_secret_value()

    def auth(self, who: str) -> dict[str, str]:
        """Authorization for `who` (a reseller id, or "ops"): one key each, made once."""
        if who not in self.keys:
            self.keys[who] = self.key(None if who == "ops" else who)
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(
        self, method: str, path: str, who: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**(self.auth(who) if who else {}), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)


@asynccontextmanager
async def api_for(
    settings: Settings, registry: Registry, client: Client | None = None
) -> AsyncIterator[Api]:
    async with (
        serving(create_app(settings, client=client, registry=registry)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        yield Api(http, registry)
