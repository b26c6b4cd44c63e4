"""HTTP API keys and Idempotency-Keys in the registry (SQLite always, PostgreSQL when
TEST_DATABASE_URL is set), and licenses by the reseller they belong to."""

# ruff: noqa: F811  (the engine and registry fixtures of test_registry.py, used by name)

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import IntegrityError

from csp_core.registry import (
    AdoptedSubscription,
    ApiKeyRefused,
    ApiKeyScope,
    IdempotencyRecord,
    Registry,
    UnknownApiKey,
    api_key_id,
)
from csp_core.registry.tables import IdempotencyKey
from tests.test_registry import (  # noqa: F401  (fixtures: both engines, a migrated registry)
    CONTOSO,
    _concurrently,
    _line,
    engine,
    registry,
)


def test_a_key_is_shown_once_and_only_its_digest_is_stored(
    registry: Registry, engine: Engine
) -> None:
    made = registry.create_api_key(ApiKeyScope.RESELLER, "RSL-042", label="ERP norte")
    key = made.key.get_secret_value()

    assert key.startswith(f"cspk_{made.record.key_id}_") and len(key) == 5 + 16 + 1 + 43
    assert api_key_id(key) == made.record.key_id
    assert (made.record.scope, made.record.reseller_id, made.record.caller) == (
        ApiKeyScope.RESELLER,
        "RSL-042",
        "reseller RSL-042",
    )
    with engine.connect() as conn:
        stored = [str(v) for v in conn.execute(text("SELECT * FROM api_keys")).one()]
    assert all(key not in value and key.split("_")[-1] not in value for value in stored)
    assert registry.authenticate_api_key(key) == made.record
    assert key not in repr(made) and key not in str(made.record)


def test_refusals_name_the_reason_and_the_key_id_never_the_key(registry: Registry) -> None:
    made = registry.create_api_key(ApiKeyScope.OPS)
    key = made.key.get_secret_value()
    key_id = made.record.key_id
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = f"cspk_{'a' * 16}_{key.split('_', 2)[2]}"

    for presented, reason, named in [
        ("", "malformed", None),
        ("Bearer " + key, "malformed", None),
        (key + "x", "malformed", None),
        (forged, "wrong secret", key_id),
        (unknown, "unknown key id", "a" * 16),
    ]:
        with pytest.raises(ApiKeyRefused) as refused:
            registry.authenticate_api_key(presented)
        assert (refused.value.reason, refused.value.key_id) == (reason, named)
        assert key not in str(refused.value) and forged not in str(refused.value)

    record, now = registry.revoke_api_key(key_id)
    assert now and record.revoked_at is not None and not record.active
    with pytest.raises(ApiKeyRefused, match="revoked"):
        registry.authenticate_api_key(key)
    again, now = registry.revoke_api_key(key_id)
    assert not now and again.revoked_at == record.revoked_at
    with pytest.raises(UnknownApiKey, match="csp apikey list"):
        registry.revoke_api_key("b" * 16)


def test_scope_and_reseller_go_together(registry: Registry, engine: Engine) -> None:
    with pytest.raises(ValueError, match="reseller key names its reseller"):
        registry.create_api_key(ApiKeyScope.RESELLER)
    with pytest.raises(ValueError, match="ops key names none"):
        registry.create_api_key(ApiKeyScope.OPS, "RSL-042")
    with pytest.raises(ValueError, match="at least 1"):
        registry.create_api_key(ApiKeyScope.OPS, rate_per_minute=0)
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the database says so too
        conn.execute(
            text(
                "INSERT INTO api_keys (key_id, key_hash, scope, reseller_id, created_at) "
                "VALUES ('k', 'h', 'ops', 'RSL-042', CURRENT_TIMESTAMP)"
            )
        )


def test_listing_leaves_revoked_keys_out_unless_asked(registry: Registry) -> None:
    kept = registry.create_api_key(ApiKeyScope.RESELLER, "RSL-042", rate_per_minute=30).record
    gone = registry.create_api_key(ApiKeyScope.OPS).record
    registry.revoke_api_key(gone.key_id)

    assert [k.key_id for k in registry.list_api_keys()] == [kept.key_id]
    assert {k.key_id for k in registry.list_api_keys(include_revoked=True)} == {
        kept.key_id,
        gone.key_id,
    }
    assert registry.get_api_key(kept.key_id) == kept and kept.rate_per_minute == 30


def test_the_first_use_of_an_idempotency_key_wins(registry: Registry) -> None:
    first = registry.claim_idempotency_key("payments", "k-1", "f" * 64, "POST /v1/payments")
    again = registry.claim_idempotency_key("payments", "k-1", "0" * 64, "POST /v1/payments")
    elsewhere = registry.claim_idempotency_key("subscription:s-1", "k-1", "0" * 64, "PUT seats")

    assert again == first and not first.completed
    assert elsewhere.fingerprint == "0" * 64  # one key means one thing per scope

    done = registry.complete_idempotency_key("payments", "k-1", 200, '{"a": 1}')
    later = registry.complete_idempotency_key("payments", "k-1", 409, '{"b": 2}')
    assert (done.status_code, done.response) == (200, '{"a": 1}') and done.completed
    assert later == done


def test_concurrent_first_uses_agree_on_one(registry: Registry) -> None:
    outcomes = _concurrently(
        lambda: registry.claim_idempotency_key("payments", "race", "a" * 64, "POST /v1/payments")
    )
    assert all(isinstance(o, IdempotencyRecord) for o in outcomes), outcomes
    assert len(set(outcomes)) == 1


def test_licenses_by_the_reseller_they_belong_to(registry: Registry) -> None:
    registry.record_order("ABS-1", "a" * 64, "RSL-042", CONTOSO, "create")
    registry.record_tenant(CONTOSO, "tid-contoso", "Contoso", "RSL-042", "created")
    registry.record_order("ABS-2", "b" * 64, "RSL-077", CONTOSO, "link")
    registry.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1")])
    registry.record_subscriptions("ABS-2", CONTOSO, [_line("sub-2", "CFQ7TTC0LDPB:0001")])
    now = datetime.now(UTC)
    registry.adopt_subscription(
        CONTOSO,
        AdoptedSubscription(
            **_line("sub-3", "CFQ7TTC0LH0Z:0001").model_dump(exclude={"status"}),
            term_started_at=now,
            term_ends_at=now + timedelta(days=365),
        ),
    )

    def ids(reseller: str | None) -> list[tuple[str, str]]:
        rows = registry.list_licenses(CONTOSO, reseller)
        return [(r.subscription_id, r.license_reseller_id) for r in rows]

    assert sorted(ids(None)) == [("sub-1", "RSL-042"), ("sub-2", "RSL-077"), ("sub-3", "RSL-042")]
    assert sorted(ids("RSL-042")) == [("sub-1", "RSL-042"), ("sub-3", "RSL-042")]
    assert ids("RSL-077") == [("sub-2", "RSL-077")]
    assert ids("RSL-999") == []
    assert {r.reseller_id for r in registry.list_licenses(CONTOSO)} == {"RSL-042"}  # tenant's


def test_idempotency_keys_past_their_retention_are_forgotten(
    registry: Registry, engine: Engine
) -> None:
    registry.claim_idempotency_key("payments", "old", "a" * 64, "POST /v1/payments")
    registry.claim_idempotency_key("payments", "new", "b" * 64, "POST /v1/payments")
    _created_at(engine, "old", datetime.now(UTC) - timedelta(days=31))

    forgotten = registry.prune_idempotency_keys(datetime.now(UTC) - timedelta(days=30))

    assert forgotten == 1
    # The old key is free again (a new request); the recent one still answers as first used.
    assert registry.claim_idempotency_key("payments", "old", "c" * 64, "x").fingerprint == "c" * 64
    assert registry.claim_idempotency_key("payments", "new", "c" * 64, "x").fingerprint == "b" * 64


def test_the_retention_edge_keeps_a_key_created_at_the_cutoff(
    registry: Registry, engine: Engine
) -> None:
    cutoff = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for key, at in (("before", cutoff - timedelta(seconds=1)), ("at", cutoff)):
        registry.claim_idempotency_key("payments", key, "a" * 64, "POST /v1/payments")
        _created_at(engine, key, at)

    assert registry.prune_idempotency_keys(cutoff) == 1
    # One second older than the cutoff is forgotten; created at the cutoff is kept.
    assert (
        registry.claim_idempotency_key("payments", "before", "c" * 64, "x").fingerprint == "c" * 64
    )
    assert registry.claim_idempotency_key("payments", "at", "c" * 64, "x").fingerprint == "a" * 64


def _created_at(engine: Engine, key: str, at: datetime) -> None:
    """Backdate a payments key, stored through the registry's own column type (as the registry
    writes it), so comparisons with the cutoff see what production rows hold."""
    with engine.begin() as conn:
        conn.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == "payments", IdempotencyKey.key == key)
            .values(created_at=at)
        )
