"""Payload encryption: what Temporal stores is unreadable without the key, the worker and the
CLI read it with the key, and the codec server lets the Web UI show it to ops."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from api import orders as order_api
from csp_core.stages import OrderStage
from temporalutil.codec import (
    ENCODING,
    EncryptionCodec,
    PayloadKeyError,
    data_converter,
    generate_key,
    parse_key,
)
from temporalutil.codec_server import create_app
from tests.support.stack import Stack, example
from worker import create_worker
from workflows.order import LicenseOrderWorkflow

KEY, OLD_KEY = generate_key(), generate_key()


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_sealed_payload_hides_the_data_and_opens_with_the_key() -> None:
    codec = EncryptionCodec([parse_key(KEY)])
    [sealed] = await codec.encode([plain("Contoso México SA de CV")])

    assert sealed.metadata["encoding"] == ENCODING
    assert b"Contoso" not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [plain("Contoso México SA de CV")]


async def test_rotation_new_key_first_still_opens_old_payloads() -> None:
    [old] = await EncryptionCodec([parse_key(OLD_KEY)]).encode([plain("x")])
    rotated = EncryptionCodec([parse_key(KEY), parse_key(OLD_KEY)])

    assert await rotated.decode([old]) == [plain("x")]
    [new] = await rotated.encode([plain("y")])
    with pytest.raises(PayloadKeyError, match="not in PAYLOAD_ENCRYPTION_KEYS"):
        await EncryptionCodec([parse_key(OLD_KEY)]).decode([new])


async def test_plain_payloads_from_before_encryption_pass_through() -> None:
    codec = EncryptionCodec([parse_key(KEY)])
    assert await codec.decode([plain("older")]) == [plain("older")]


async def test_tampered_payload_is_refused() -> None:
    codec = EncryptionCodec([parse_key(KEY)])
    [sealed] = await codec.encode([plain("1290.00")])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadKeyError, match="was altered"):
        await codec.decode([sealed])


@pytest.mark.parametrize(
    ("key", "rule"),
    [("not base64!", "not URL-safe base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_bad_key_is_refused_naming_the_setting(key: str, rule: str) -> None:
    with pytest.raises(PayloadKeyError, match=f"PAYLOAD_ENCRYPTION_KEYS.*{rule}"):
        parse_key(key)


async def test_order_history_on_the_server_is_sealed(stack: Stack) -> None:
    """A worker and client with the key run a real order; the server only ever holds sealed
    payloads: a client without the key sees no client data in the history."""
    sealed_client = Client(**{**stack.env.client.config(), "data_converter": data_converter([KEY])})
    order = example("order-create.json")
    async with create_worker(
        sealed_client, f"{stack.task_queue}-sealed", stack.activities(), strict_sandbox=True
    ):
        settings = stack.settings.model_copy(update={"task_queue": f"{stack.task_queue}-sealed"})
        submitted = await order_api.submit_order(sealed_client, stack.registry, order, settings)
        stack.started.append(submitted.workflow_id)
        handle = sealed_client.get_workflow_handle_for(
            LicenseOrderWorkflow.run, submitted.workflow_id
        )
        result = await stack.result(handle)

    assert result.stage is OrderStage.ACTIVE  # the keyed client reads it
    raw = (await stack.env.client.get_workflow_handle(handle.id).fetch_history()).to_json()
    for secret in ("Contoso", "contosomx", "ana.lopez", "129.00", order.reseller.email):
        assert secret not in raw, secret
    assert base64.b64encode(ENCODING).decode() in raw


@pytest.fixture
def codec_server() -> Iterator[str]:
    app = create_app(EncryptionCodec([parse_key(KEY)]), ["http://localhost:8233"], "Bearer t0k")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def test_codec_server_decodes_for_the_web_ui(codec_server: str) -> None:
    [sealed] = await EncryptionCodec([parse_key(KEY)]).encode([plain("Fabrikam")])
    body = {"payloads": [json_format.MessageToDict(sealed)]}
    headers = {"Authorization": "Bearer t0k", "Origin": "http://localhost:8233"}
    async with httpx.AsyncClient(base_url=codec_server, timeout=10) as http:
        response = await http.post("/decode", json=body, headers=headers)
        refused = await http.post("/decode", json=body, headers={"Origin": "http://localhost:8233"})
        preflight = await http.options(
            "/decode",
            headers={
                "Origin": "http://localhost:8233",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
        )

    assert response.status_code == 200, response.text
    [decoded] = [json_format.ParseDict(p, Payload()) for p in response.json()["payloads"]]
    assert decoded == plain("Fabrikam")
    assert response.headers["access-control-allow-origin"] == "http://localhost:8233"
    assert refused.status_code == 401
    assert preflight.status_code == 200
