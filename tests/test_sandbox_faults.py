"""Sandbox faults on demand: one-shot ones (/sandbox/faults) and random rates (SANDBOX_FAULTS),
over real HTTP. Stats count real effects once; faults and replays are counted apart."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.__main__ import main as sandbox_main
from sandbox.server import serve_in_background
from sandbox.state import NORTHWIND_LEGACY_ORDER, NORTHWIND_TENANT, FaultProfile, FaultSpecError

TOKEN = "faults-token"
# Partner Center requires MS-Contract-Version on every call; the sandbox does too.
AUTH = {"Authorization": f"Bearer {TOKEN}", "MS-Contract-Version": "v1"}
ORDER = {
    "referenceCustomerId": NORTHWIND_TENANT,
    "lineItems": [
        {"lineItemNumber": 0, "offerId": "CFQ7TTC0LH18:0001:CFQ7TTC0K971", "quantity": 3,
         "termDuration": "P1Y", "billingCycle": "monthly"},
    ],
}  # fmt: skip
ORDERS_PATH = f"/v1/customers/{NORTHWIND_TENANT}/orders"


def customer_body(prefix: str) -> dict[str, Any]:
    return {
        "companyProfile": {"domain": f"{prefix}.onmicrosoft.com"},
        "billingProfile": {
            "email": "ana@example.mx",
            "companyName": "Cliente SA de CV",
            "defaultAddress": {
                "country": "MX", "city": "Monterrey", "state": "NL",
                "addressLine1": "Av. Constitución 100", "postalCode": "64000",
                "firstName": "Ana", "lastName": "López",
            },
        },
    }  # fmt: skip


def headers(request_id: str | None = None) -> dict[str, str]:
    return {**AUTH, "MS-RequestId": request_id or str(uuid.uuid4())}


@pytest.fixture
def plain() -> Iterator[httpx.Client]:
    """A sandbox without random faults (one-shot faults only)."""
    with serve_in_background(port=0, token=TOKEN) as url, httpx.Client(base_url=url) as http:
        yield http


def serve_with(profile: FaultProfile) -> Any:
    return serve_in_background(port=0, token=TOKEN, faults=profile)


def test_one_shot_lost_response_commits_then_answers_502(plain: httpx.Client) -> None:
    plain.post(
        "/sandbox/faults",
        json={"kind": "lost_response", "method": "POST", "path_prefix": ORDERS_PATH},
    ).raise_for_status()
    request_id = str(uuid.uuid4())

    lost = plain.post(ORDERS_PATH, json=ORDER, headers=headers(request_id))

    assert lost.status_code == 502
    items = plain.get(ORDERS_PATH, headers=AUTH).raise_for_status().json()["items"]
    # committed: the caller can look it up (beside the order seeded before this system)
    (placed,) = [order for order in items if order["id"] != NORTHWIND_LEGACY_ORDER]
    retried = plain.post(ORDERS_PATH, json=ORDER, headers=headers(request_id))
    assert retried.status_code == 201
    assert retried.json()["id"] == placed["id"]  # same request id: the first answer
    stats = plain.get("/sandbox/stats").json()
    assert stats["orders_created"] == 1
    assert stats["requests_replayed"] == 1
    assert (stats["faults_served"], stats["faults_served_lost_response"]) == (1, 1)
    assert stats["duplicate_orders"] == 0


def test_one_shot_lost_response_can_drop_the_connection(plain: httpx.Client) -> None:
    plain.post(
        "/sandbox/faults",
        json={"kind": "lost_response", "method": "POST", "path_prefix": "/v1/customers",
              "lost_as": "drop"},
    ).raise_for_status()  # fmt: skip

    with pytest.raises(httpx.RemoteProtocolError):
        plain.post("/v1/customers", json=customer_body("perdido1"), headers=headers())

    world = plain.get("/sandbox/world").json()
    created = [c for c in world["customers"] if c["origin"] == "api"]
    assert [c["domain"] for c in created] == ["perdido1.onmicrosoft.com"]
    assert world["stats"]["customers_created"] == 1


def test_lost_response_on_a_refused_write_answers_the_refusal(plain: httpx.Client) -> None:
    plain.post(
        "/sandbox/faults", json={"kind": "lost_response", "path_prefix": "/v1/customers"}
    ).raise_for_status()

    taken = plain.post("/v1/customers", json=customer_body("northwind"), headers=headers())

    assert taken.status_code == 409  # nothing committed, nothing to lose
    assert plain.get("/sandbox/stats").json()["faults_served_lost_response"] == 0


def test_error_fault_needs_a_status(plain: httpx.Client) -> None:
    refused = plain.post("/sandbox/faults", json={"kind": "error"})
    assert refused.status_code == 400
    assert "status" in refused.json()["description"]


def test_error_rate_answers_5xx_without_effect() -> None:
    with serve_with(FaultProfile(error_rate=1.0, seed=1)) as url, httpx.Client(base_url=url) as c:
        answers = {c.post(ORDERS_PATH, json=ORDER, headers=headers()).status_code for _ in range(6)}
        assert answers <= {500, 503} and answers
        # Controls are never faulted.
        assert c.get("/sandbox/health").status_code == 200
        stats = c.get("/sandbox/stats").json()
        assert stats["orders_created"] == 0
        assert (stats["faults_served"], stats["faults_served_error"]) == (6, 6)


def test_throttle_rate_answers_429_with_retry_after() -> None:
    profile = FaultProfile(throttle_rate=1.0, retry_after_s=2)
    with serve_with(profile) as url, httpx.Client(base_url=url) as c:
        throttled = c.get(f"/v1/customers/{NORTHWIND_TENANT}", headers=AUTH)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "2"
        assert c.get("/sandbox/stats").json()["faults_served_throttle"] == 1


def test_lost_response_rate_hits_writes_only_and_counts_effects_once() -> None:
    with (
        serve_with(FaultProfile(lost_response_rate=1.0, seed=7)) as url,
        httpx.Client(base_url=url) as c,
    ):
        outcomes = []
        for n in range(6):
            try:
                answer = c.post("/v1/customers", json=customer_body(f"lost{n}"), headers=headers())
                outcomes.append(answer.status_code)
            except httpx.RemoteProtocolError:
                outcomes.append("drop")
        assert set(outcomes) == {502, "drop"}  # seed 7 draws both within six calls
        assert c.get(f"/v1/customers/{NORTHWIND_TENANT}", headers=AUTH).status_code == 200
        stats = c.get("/sandbox/stats").json()
        assert stats["customers_created"] == 6
        assert stats["faults_served_lost_response"] == 6


def test_latency_is_added_to_api_calls_only() -> None:
    with serve_with(FaultProfile(latency_ms=300)) as url, httpx.Client(base_url=url) as c:
        started = time.monotonic()
        c.get(f"/v1/customers/{NORTHWIND_TENANT}", headers=AUTH).raise_for_status()
        api_s = time.monotonic() - started
        started = time.monotonic()
        c.get("/sandbox/stats").raise_for_status()
        control_s = time.monotonic() - started
    assert api_s >= 0.3
    assert control_s < 0.3


def test_the_same_seed_draws_the_same_faults() -> None:
    def draws(seed: int) -> list[str | None]:
        profile = FaultProfile.parse(
            "error_rate=0.2,throttle_rate=0.1,lost_response_rate=0.05", seed
        )
        return [profile.draw("POST") for _ in range(200)]

    assert draws(42) == draws(42)
    assert draws(42) != draws(43)
    assert {"error", "throttle", "lost_response", None} == set(draws(42))


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("error_rate=1.5", "error_rate must be between 0 and 1"),
        ("throttle_rate=-0.1", "throttle_rate must be between 0 and 1"),
        ("lost_rate=0.1", "unknown key 'lost_rate'"),
        ("latency_ms=abc", "latency_ms must be a number"),
        ("latency_ms=-5", "latency_ms must be >= 0"),
        ("error_rate", "'error_rate' is not key=value"),
        ("error_rate=0.6,throttle_rate=0.6", "must not exceed 1"),
    ],
)
def test_a_bad_spec_is_refused_at_start_naming_the_key(
    spec: str, named: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FaultSpecError, match=named.replace("(", r"\(")):
        FaultProfile.parse(spec)
    monkeypatch.setenv("SANDBOX_FAULTS", spec)
    with pytest.raises(SystemExit) as exited:
        sandbox_main(["--port", "0"])
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_control_tenants_orders_listing_and_duplicate_detection(plain: httpx.Client) -> None:
    added = plain.post(
        "/sandbox/customers", json={"domain": "clientepropio.onmicrosoft.com"}
    ).raise_for_status()
    tenant = added.json()["id"]
    assert added.json()["relationshipToPartner"] == "none"
    assert (
        plain.post(
            "/sandbox/customers", json={"domain": "clientepropio.onmicrosoft.com"}
        ).status_code
        == 409
    )
    path = f"/v1/customers/{tenant}/orders"
    body = {**ORDER, "referenceCustomerId": tenant}

    plain.post(path, json=body, headers=headers("rid-1")).raise_for_status()
    plain.post(path, json=body, headers=headers("rid-1")).raise_for_status()  # replay
    plain.post(path, json=body, headers=headers("rid-2")).raise_for_status()  # double placement

    world = plain.get("/sandbox/world").json()
    orders = [o for o in world["orders"] if o["tenant_id"] == tenant]
    assert sorted(o["request_id"] for o in orders) == ["rid-1", "rid-2"]
    assert {o["domain"] for o in orders} == {"clientepropio.onmicrosoft.com"}
    origins = {c["domain"]: c["origin"] for c in world["customers"]}
    assert origins["clientepropio.onmicrosoft.com"] == "control"
    assert origins["northwind.onmicrosoft.com"] == "seed"
    stats = world["stats"]
    assert (stats["orders_created"], stats["duplicate_orders"], stats["tenants_added"]) == (2, 1, 1)
    assert stats["customers_created"] == 0
    listed = plain.get(path, headers=AUTH).json()
    assert listed["totalCount"] == 2
