"""The webhooks over real HTTP (uvicorn on a free port) against the time-skipping test server,
a worker with the real activities and the sandbox: every signature refusal (unsigned, wrong,
stale, an untrusted certificate host), an event about nothing we know, and an event delivered
twice (answered as the first time, signalled once)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from csp_core.settings import Settings
from http_api import create_app
from http_api.problems import TYPE_PREFIX
from http_api.webhooks.signatures import check_fresh
from tests.support.http_api import serving
from tests.support.stack import Stack, example
from tests.support.webhooks import (
    INGRAM_PATH,
    PARTNER_CENTER_PATH,
    PartnerCenterSigner,
    certificate_host,
    eventually,
    ingram_event,
    relationship_event,
    signed_ingram,
    stage_of,
    updates_and_signals,
    webhook_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

FABRIKAM_TENANT = "b8e2d4f6-9c1a-4b3e-8f57-2a6c0d9e1b44"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        webhook_settings(stack),
        client=stack.tracking_client,
        registry=stack.registry,
        provider=stack.provider,
    )
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def partner_center() -> AsyncIterator[PartnerCenterSigner]:
    async with certificate_host() as signer:
        yield signer


def refused(response: httpx.Response, slug: str, status: int = 401) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == TYPE_PREFIX + slug, body
    assert response.headers["content-type"].startswith("application/problem+json")
    return body["detail"]


# ------------------------------------------------------------------------------ Ingram
async def test_ingram_events_unsigned_wrongly_signed_or_stale_are_refused(
    api: httpx.AsyncClient,
) -> None:
    event = ingram_event("MX-000001")
    unsigned = await api.post(INGRAM_PATH, json=event)
    assert "x-hub-signature is missing" in refused(unsigned, "unsigned-event")

    other_secret = await api.post(INGRAM_PATH, **signed_ingram(event, secret="not-the-secret"))
    refused(other_secret, "bad-signature")
    # The signature is of the event id: another id with this signature is refused too.
    moved = signed_ingram(event)
    moved["content"] = json.dumps({**event, "eventId": "other"}).encode()
    refused(await api.post(INGRAM_PATH, **moved), "bad-signature")

    old = ingram_event("MX-000001", at=datetime.now(UTC) - timedelta(hours=2))
    assert "older than 3600 s" in refused(
        await api.post(INGRAM_PATH, **signed_ingram(old)), "stale-event"
    )
    ahead = ingram_event("MX-000001", at=datetime.now(UTC) + timedelta(hours=1))
    assert "in the future" in refused(
        await api.post(INGRAM_PATH, **signed_ingram(ahead)), "stale-event"
    )


async def test_an_event_is_fresh_until_its_max_age_and_refused_a_second_later() -> None:
    settings = Settings(
        ingram_webhook_secret=SecretStr("s"), webhook_max_age=600, webhook_max_skew=60
    )
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def stamp(delta: timedelta) -> str:
        return (now + delta).isoformat()

    check_fresh(settings, stamp(-timedelta(seconds=599)), now)  # 1 s before the edge
    check_fresh(settings, stamp(-timedelta(seconds=600)), now)  # at the edge
    with pytest.raises(Exception, match="older than 600 s"):
        check_fresh(settings, stamp(-timedelta(seconds=601)), now)
    check_fresh(settings, stamp(timedelta(seconds=60)), now)  # skew: at the edge
    with pytest.raises(Exception, match="in the future"):
        check_fresh(settings, stamp(timedelta(seconds=61)), now)


async def test_an_ingram_event_about_an_unknown_order_is_answered_and_not_retried(
    api: httpx.AsyncClient,
) -> None:
    event = ingram_event("MX-999999", "CUNKNOWN")

    response = await api.post(INGRAM_PATH, **signed_ingram(event))

    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["outcome"] == "unknown"


# ------------------------------------------------------------------------------ Partner Center
async def test_partner_center_events_unsigned_wrongly_signed_or_from_an_untrusted_host(
    api: httpx.AsyncClient, partner_center: PartnerCenterSigner
) -> None:
    event = relationship_event(FABRIKAM_TENANT)
    unsigned = await api.post(PARTNER_CENTER_PATH, json=event)
    refused(unsigned, "unsigned-event")

    tampered = partner_center.signed(event)
    tampered["content"] = json.dumps({**event, "ResourceUri": "/v1/customers/other"}).encode()
    assert "does not match the body" in refused(
        await api.post(PARTNER_CENTER_PATH, **tampered), "bad-signature"
    )

    for url in (
        "https://certs.attacker.example/certificate",  # not an allowed host
        "http://localhost:1/certificate",  # loopback, but not a listed host
    ):
        untrusted = partner_center.signed(event, **{"X-MS-Certificate-Url": url})
        assert "is not trusted" in refused(
            await api.post(PARTNER_CENTER_PATH, **untrusted), "untrusted-certificate"
        )


async def test_a_relationship_event_delivered_twice_accepts_the_order_once(
    stack: Stack, api: httpx.AsyncClient, partner_center: PartnerCenterSigner
) -> None:
    order = example("order-link-invite.json")
    handle = await stack.submit(order)
    await stack.first_task_done(handle)
    assert await eventually(lambda: _is(handle, "AWAITING_PARTNER_ACCEPTANCE")), await stage_of(
        handle
    )
    # The client accepts (the sandbox's world only: no event from it in this test).
    stack.sandbox.post("/sandbox/customers/fabrikam.onmicrosoft.com/accept").raise_for_status()
    event = partner_center.signed(relationship_event(FABRIKAM_TENANT))

    first = await api.post(PARTNER_CENTER_PATH, **event)
    again = await api.post(PARTNER_CENTER_PATH, **event)

    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "signalled"
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert await eventually(lambda: _is(handle, "ACTIVE")), await stage_of(handle)
    assert (await updates_and_signals(handle)).count("accept_partner") == 1
    # Delivered once more after the order went on: answered, nothing to do, nothing sent.
    late = await api.post(
        PARTNER_CENTER_PATH, **partner_center.signed(relationship_event(FABRIKAM_TENANT))
    )
    assert late.json()["outcome"] in ("unknown", "nothing-to-do")
    assert (await updates_and_signals(handle)).count("accept_partner") == 1


async def _is(handle: object, stage: str) -> bool:
    return await stage_of(handle) == stage  # type: ignore[arg-type]


async def test_certificate_urls_are_trusted_only_on_listed_https_hosts() -> None:
    from csp_core.settings import Deployment
    from http_api.webhooks.signatures import cert_url_allowed

    dev = Settings(
        partner_center_webhook_cert_hosts="api.partnercenter.microsoft.com,127.0.0.1:8100"
    )
    assert cert_url_allowed(dev, "https://api.partnercenter.microsoft.com/signature/certificate")
    assert cert_url_allowed(dev, "http://127.0.0.1:8100/sandbox/events/certificate")
    assert not cert_url_allowed(dev, "http://api.partnercenter.microsoft.com/certificate")
    assert not cert_url_allowed(dev, "http://127.0.0.1:8101/sandbox/events/certificate")
    assert not cert_url_allowed(dev, "https://api.partnercenter.microsoft.com.evil.example/c")
    production = Settings.model_construct(**{**dev.__dict__, "deployment": Deployment.PRODUCTION})
    assert not cert_url_allowed(production, "http://127.0.0.1:8100/sandbox/events/certificate")


async def test_without_a_shared_secret_ingram_events_are_refused(stack: Stack) -> None:
    settings = webhook_settings(stack).model_copy(update={"ingram_webhook_secret": None})
    app = create_app(settings, client=stack.tracking_client, registry=stack.registry)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post(INGRAM_PATH, **signed_ingram(ingram_event("MX-1")))
    assert "INGRAM_WEBHOOK_SECRET is unset" in refused(response, "bad-signature")
