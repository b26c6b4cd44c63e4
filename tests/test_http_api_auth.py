"""The HTTP API's keys, over real HTTP (uvicorn on a free port) against a SQLite registry:
401 without a valid key, 429 past a key's rate, refusals logged by key id and never with the
key. Nothing here reaches Temporal (the API connects on first use and none of these need it)."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import structlog

from csp_core.registry import Registry
from csp_core.settings import Settings
from http_api.problems import PROBLEM_JSON, TYPE_PREFIX
from http_api.ratelimit import RateLimiter
from temporalutil.logging import configure_logging
from tests.support.http_api import Api, api_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest_asyncio.fixture(loop_scope="session")
async def api(registry: Registry) -> AsyncIterator[Api]:
    settings = Settings(temporal_address=f"127.0.0.1:{closed_port()}", api_rate_limit_burst=20)
    async with api_for(settings, registry) as api:
        yield api


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The API's logs as JSON lines (LOG_JSON), as the deployed API writes them."""
    root = logging.getLogger()
    saved, saved_structlog = (root.handlers[:], root.level), structlog.get_config()
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    # Later tests capture structlog's output (structlog.testing): no cached loggers from here.
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)


def problem(response_json: dict, status: int, slug: str) -> str:
    assert response_json["status"] == status and response_json["type"] == TYPE_PREFIX + slug
    assert response_json["title"] and response_json["instance"].startswith("/")
    return response_json["detail"]


async def test_no_key_or_a_bad_one_is_401_with_the_way_to_get_one(
    api: Api, logged: io.StringIO
) -> None:
    good = api.key("RSL-042")
    key_id = good.split("_")[1]
    revoked = api.key("RSL-042")
    api.registry.revoke_api_key(revoked.split("_")[1])
    forged = good[:-6] + ("A" * 6 if not good.endswith("A" * 6) else "B" * 6)

    none = await api.call("GET", "/v1/licenses")
    assert none.status_code == 401
    assert none.headers["content-type"] == PROBLEM_JSON
    assert none.headers["www-authenticate"] == 'Bearer realm="csp-orchestrator"'
    assert "csp apikey create" in problem(none.json(), 401, "unauthorized")
    for header in (f"Basic {good}", "Bearer", "Bearer not-a-key", f"Bearer {forged}",
                   f"Bearer {revoked}", f"Bearer {good}x"):  # fmt: skip
        refused = await api.call("GET", "/v1/licenses", headers={"Authorization": header})
        assert refused.status_code == 401, header
        detail = problem(refused.json(), 401, "unauthorized")
        assert good not in refused.text and revoked not in refused.text and forged not in detail
    ok = await api.call("GET", "/v1/licenses", headers={"Authorization": f"Bearer {good}"})
    assert (ok.status_code, ok.json()) == (200, [])

    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    refusals = [line for line in lines if line.get("event") == "request refused"]
    assert len(refusals) == 7
    assert {r["reason"] for r in refusals} == {
        "no bearer credentials", "malformed", "wrong secret", "revoked"
    }  # fmt: skip
    assert any(r["key_id"] == key_id and r["reason"] == "wrong secret" for r in refusals)
    assert all(r["status"] == 401 and r["path"] == "/v1/licenses" for r in refusals)
    everything = logged.getvalue()
    for secret in (good, revoked, forged, good.split("_", 2)[2], forged.split("_", 2)[2]):
        assert secret not in everything


async def test_past_its_rate_a_key_gets_429_with_retry_after(api: Api) -> None:
    slow = {"Authorization": f"Bearer {api.key('RSL-042', rate_per_minute=2)}"}

    answers = [await api.call("GET", "/v1/licenses", headers=slow) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "30"  # one request every 30 s at 2 a minute
    assert "ask again in 30 s" in problem(answers[2].json(), 429, "rate-limited")
    other = await api.call("GET", "/v1/licenses", "RSL-042")  # another key: its own bucket
    assert other.status_code == 200


async def test_docs_and_health_need_no_key_and_every_error_is_a_problem(api: Api) -> None:
    docs = await api.call("GET", "/docs")
    spec = (await api.call("GET", "/openapi.json")).json()
    health = await api.call("GET", "/healthz")
    missing = await api.call("GET", "/v2/orders", "ops")
    wrong_method = await api.call("DELETE", "/v1/licenses", "ops")

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/v1/orders" in spec["paths"] and "Order" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert health.json() == {"status": "ok"}
    assert "/v1" in problem(missing.json(), 404, "not-found")
    assert "DELETE is not allowed" in problem(wrong_method.json(), 405, "method-not-allowed")


async def test_bad_query_input_is_422_naming_the_field(api: Api) -> None:
    answer = await api.call("GET", "/v1/licenses", "ops", params={"domain": "contoso.com"})

    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {
            "field": "domain",
            "rule": "must be the tenant's initial <prefix>.onmicrosoft.com domain, e.g. "
            "fabrikam.onmicrosoft.com (got 'contoso.com')",
        }
    ]


async def test_the_bucket_refills_at_the_rate_and_holds_at_most_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])

    assert [limiter.take("k", 60, 3) for _ in range(4)] == [0, 0, 0, 1.0]
    now[0] += 0.5
    assert limiter.take("k", 60, 3) == pytest.approx(0.5)  # half a token back
    now[0] += 0.5
    assert limiter.take("k", 60, 3) == 0
    now[0] += 3600
    assert [limiter.take("k", 60, 3) for _ in range(4)][-1] > 0  # never more than the burst
    assert limiter.take("other", 60, 3) == 0


async def test_while_temporal_is_unreachable_the_api_answers_503_with_retry_after(
    api: Api,
) -> None:
    answer = await api.call("GET", "/v1/orders/ABS-1", "RSL-042")

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "ask again in a few seconds" in problem(answer.json(), 503, "temporal-unavailable")
    licenses = await api.call("GET", "/v1/licenses", "RSL-042")  # the registry still answers
    assert licenses.status_code == 200
