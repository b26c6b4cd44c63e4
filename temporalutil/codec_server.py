"""The codec server the Temporal Web UI and CLI call to show encrypted payloads to ops
(`--ui-codec-endpoint`, `temporal --codec-endpoint`): POST /decode and /encode with
`{"payloads": [...]}` in Temporal's JSON form. Run it next to the people who may read the data:
whoever reaches it can read every payload, so bind it locally or put it behind auth
(CODEC_AUTH_TOKEN is checked against the Authorization header when set).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from temporalutil.codec import PayloadKeyError


def create_app(
    codec: PayloadCodec, cors_origins: Sequence[str], auth_token: str | None = None
) -> FastAPI:
    app = FastAPI(title="csp-orchestrator codec server", docs_url=None, redoc_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cors_origins),
        allow_credentials=True,
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Namespace", "Authorization"],
    )

    async def run(
        request: Request, step: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
    ) -> dict[str, Any]:
        if auth_token is not None and not secrets.compare_digest(
            request.headers.get("authorization", ""), auth_token
        ):
            raise HTTPException(status_code=401, detail="codec server: not authorized")
        body = await request.json()
        try:
            payloads = [json_format.ParseDict(p, Payload()) for p in body.get("payloads", [])]
        except (json_format.ParseError, AttributeError, TypeError) as err:
            raise HTTPException(status_code=400, detail=f"payloads: {err}") from err
        try:
            converted = await step(payloads)
        except PayloadKeyError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        return {"payloads": [json_format.MessageToDict(p) for p in converted]}

    @app.post("/decode")
    async def decode(request: Request) -> dict[str, Any]:
        return await run(request, codec.decode)

    @app.post("/encode")
    async def encode(request: Request) -> dict[str, Any]:
        return await run(request, codec.encode)

    return app
