"""What adoption needs from the registry, on a SQLite file and on PostgreSQL when
TEST_DATABASE_URL is set: recording a license no order of ours bought (once, with its real
dates), the price a SKU was last sold at, the reseller to write to, and every known tenant."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from csp_core.registry import (
    AdoptedSubscription,
    LicenseTransferRefused,
    NewSubscription,
    Registry,
    UnknownTenant,
    make_engine,
)
from csp_core.registry.migrate import upgrade

NORTHWIND = "northwind.onmicrosoft.com"
CONTOSO = "contosomx.onmicrosoft.com"
BOUGHT = datetime(2026, 11, 19, 18, 30, tzinfo=UTC)
TERM_END = datetime(2027, 11, 18, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'csp.db'}")
        upgrade(engine)
        yield Registry(engine)
        engine.dispose()
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is unset: PostgreSQL registry tests skipped")
    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine: Engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        upgrade(engine)
        yield Registry(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def legacy(sub_id: str = "legacy-1", quantity: int = 8) -> AdoptedSubscription:
    return AdoptedSubscription(
        subscription_id=sub_id,
        sku="CFQ7TTC0LH18:0001",
        product_name="Microsoft 365 Business Basic",
        quantity=quantity,
        term="P1Y",
        billing_cycle="monthly",
        unit_price=Decimal("129.00"),
        activated_at=BOUGHT,
        term_started_at=BOUGHT,
        term_ends_at=TERM_END,
        auto_renew=False,
    )


def sold(registry: Registry, order_id: str, domain: str, sub_id: str, price: str) -> None:
    registry.record_order(order_id, "a" * 64, "RSL-042", domain, "create", "Integradora", "c@i.mx")
    registry.record_subscriptions(
        order_id,
        domain,
        [
            NewSubscription(
                subscription_id=sub_id,
                sku="CFQ7TTC0LH18:0001:CFQ7TTC0K59S",
                product_name="Microsoft 365 Business Basic",
                quantity=10,
                term="P1Y",
                billing_cycle="monthly",
                unit_price=Decimal(price),
            )
        ],
    )


@pytest.fixture
def tenants(registry: Registry) -> Registry:
    registry.record_tenant(NORTHWIND, "tid-northwind", "Northwind Traders", "RSL-042", "linked")
    registry.record_tenant(CONTOSO, "tid-contoso", "Contoso México", "RSL-042", "created")
    return registry


def test_a_license_bought_before_this_system_is_recorded_once_with_its_real_dates(
    tenants: Registry,
) -> None:
    record, created = tenants.adopt_subscription(NORTHWIND, legacy())
    again, created_again = tenants.adopt_subscription(NORTHWIND, legacy(quantity=99))

    assert (created, created_again) == (True, False)
    assert again == record
    assert record.order_id is None and record.status.value == "active"
    assert (record.activated_at, record.term_started_at, record.term_ends_at) == (
        BOUGHT,
        BOUGHT,
        TERM_END,
    )
    assert record.auto_renew is False and record.quantity == 8
    [license_] = tenants.list_licenses(NORTHWIND)
    assert license_.subscription_id == "legacy-1" and license_.order_id is None


def test_a_license_an_order_recorded_keeps_its_data_and_gains_its_term(
    tenants: Registry,
) -> None:
    sold(tenants, "ABS-1", NORTHWIND, "ordered-1", "3120.00")

    record, created = tenants.adopt_subscription(NORTHWIND, legacy("ordered-1"))

    assert created is False
    assert (record.order_id, record.unit_price, record.quantity) == (
        "ABS-1",
        Decimal("3120.00"),
        10,
    )
    assert (record.term_started_at, record.term_ends_at) == (BOUGHT, TERM_END)
    # A term already known is the workflow's to move, not adoption's.
    later = legacy("ordered-1").model_copy(update={"term_started_at": BOUGHT + timedelta(days=1)})
    kept, _ = tenants.adopt_subscription(NORTHWIND, later)
    assert kept.term_started_at == BOUGHT


def test_adoption_never_moves_a_license_nor_records_one_on_an_unknown_tenant(
    tenants: Registry,
) -> None:
    tenants.adopt_subscription(NORTHWIND, legacy())

    with pytest.raises(LicenseTransferRefused):
        tenants.adopt_subscription(CONTOSO, legacy())
    with pytest.raises(UnknownTenant):
        tenants.adopt_subscription("nadie.onmicrosoft.com", legacy("other"))
    assert tenants.get_subscription("legacy-1").tenant_domain == NORTHWIND  # type: ignore[union-attr]


def test_the_price_a_sku_was_last_sold_at_prefers_the_tenant(tenants: Registry) -> None:
    assert tenants.last_sold_price("CFQ7TTC0LH18:0001") is None
    sold(tenants, "ABS-1", CONTOSO, "c-1", "129.00")
    sold(tenants, "ABS-2", CONTOSO, "c-2", "135.00")

    anywhere = tenants.last_sold_price("CFQ7TTC0LH18:0001")
    assert anywhere is not None
    assert (anywhere.unit_price, anywhere.order_id) == (Decimal("135.00"), "ABS-2")
    assert tenants.last_sold_price("CFQ7TTC0LH18:0001", NORTHWIND) is None
    sold(tenants, "ABS-3", NORTHWIND, "n-1", "120.00")
    here = tenants.last_sold_price("CFQ7TTC0LH18:0001", NORTHWIND)
    assert here is not None and here.unit_price == Decimal("120.00")
    assert tenants.last_sold_price("CFQ7TTC0LH18:0002") is None


def test_the_reseller_to_write_to_is_its_latest_order_naming_a_contact(
    tenants: Registry,
) -> None:
    assert tenants.latest_order_for(NORTHWIND, "RSL-042") is None
    tenants.record_order("ABS-1", "a" * 64, "RSL-042", NORTHWIND, "link", "Integradora", "a@i.mx")
    tenants.record_order("ABS-2", "b" * 64, "RSL-042", NORTHWIND, "link")  # no contact
    tenants.record_order("ABS-3", "c" * 64, "RSL-077", NORTHWIND, "link", "Bajío", "v@b.mx")

    latest = tenants.latest_order_for(NORTHWIND, "RSL-042")

    assert latest is not None and (latest.order_id, latest.reseller_email) == ("ABS-1", "a@i.mx")
    assert [t.domain for t in tenants.list_tenants()] == [CONTOSO, NORTHWIND]
