"""What the registry keeps of a subscription's life: its term, auto-renew, cancellation and
expiry, on a SQLite file always and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from csp_core.registry import NewSubscription, Registry, UnknownSubscription, make_engine, migrate

CONTOSO = "contosomx.onmicrosoft.com"
PURCHASED = datetime(2026, 11, 2, 17, 30, tzinfo=UTC)
LAST_DAY = datetime(2027, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'csp.db'}")
        yield eng
        eng.dispose()
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is unset: PostgreSQL registry tests skipped")
    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    eng = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def registry(engine: Engine) -> Registry:
    migrate.upgrade(engine)
    reg = Registry(engine)
    reg.record_order("ABS-1", "a" * 64, "RSL-042", CONTOSO, "create")
    reg.record_tenant(CONTOSO, "tid-contoso", "Contoso México SA de CV", "RSL-042", "created")
    line = NewSubscription(
        subscription_id="sub-1",
        sku="CFQ7TTC0LH18:0001",
        product_name="Microsoft 365 Business Basic",
        quantity=10,
        term="P1Y",
        billing_cycle="monthly",
        unit_price=Decimal("129.00"),
    )
    reg.record_subscriptions("ABS-1", CONTOSO, [line])
    reg.set_subscription_status("sub-1", "active", PURCHASED)
    return reg


def test_the_term_and_auto_renew_are_recorded(registry: Registry) -> None:
    registry.record_subscription_term("sub-1", PURCHASED, LAST_DAY)
    registry.set_subscription_auto_renew("sub-1", False)

    sub = registry.get_subscription("sub-1")
    assert sub is not None
    assert (sub.term_started_at, sub.term_ends_at, sub.auto_renew) == (PURCHASED, LAST_DAY, False)
    with pytest.raises(ValueError, match="ends after it starts"):
        registry.record_subscription_term("sub-1", LAST_DAY, PURCHASED)
    with pytest.raises(UnknownSubscription):
        registry.record_subscription_term("sub-404", PURCHASED, LAST_DAY)


def test_an_expired_subscription_owes_no_more_renewal_charges(registry: Registry) -> None:
    assert [s.subscription_id for s in registry.list_subscriptions({"active", "suspended"})] == [
        "sub-1"
    ]

    registry.set_subscription_status("sub-1", "expired", only_from={"active", "suspended"})

    assert registry.list_subscriptions({"active", "suspended"}) == []


def test_a_reactivation_never_brings_back_a_closed_subscription(registry: Registry) -> None:
    registry.set_subscription_status("sub-1", "expired")

    kept = registry.set_subscription_status("sub-1", "active", only_from={"active", "suspended"})

    assert kept.status == "expired"
    with pytest.raises(UnknownSubscription):
        registry.set_subscription_status("sub-404", "active", only_from={"suspended"})


def test_a_cancellation_keeps_when_it_happened(registry: Registry) -> None:
    at = datetime(2026, 11, 3, 10, tzinfo=UTC)
    sub = registry.set_subscription_status("sub-1", "cancelled", cancelled_at=at)
    assert (sub.status, sub.cancelled_at) == ("cancelled", at)
