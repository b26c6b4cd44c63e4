"""The registry on real databases: a SQLite file always, PostgreSQL when TEST_DATABASE_URL is set.

Each PostgreSQL test runs in its own fresh schema (dropped afterwards), so runs never clash.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from csp_core.registry import (
    ChargeAlreadyPaid,
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    LicenseTransferRefused,
    NewSubscription,
    NotificationStatus,
    OrderConflict,
    Registry,
    SubscriptionStatus,
    TenantConflict,
    UnknownCharge,
    UnknownOrder,
    UnknownSubscription,
    UnknownTenant,
    credentials_ref,
    make_engine,
    migrate,
    normalize_url,
)
from csp_core.registry.tables import Base
from csp_core.secrets import SecretVault, SecretVaultError, generate_key
from csp_core.stages import OrderStage, PaymentStatus

PG_SKIP = "TEST_DATABASE_URL is unset: PostgreSQL registry tests skipped"
MEXICO = ZoneInfo("America/Mexico_City")
CONTOSO = "contosomx.onmicrosoft.com"
FABRIKAM = "fabrikam.onmicrosoft.com"
HEAD = "0007_api_keys"
TABLES = {
    "tenants",
    "orders",
    "subscriptions",
    "credentials",
    "notifications",
    "renewal_charges",
    "renewal_payments",
    "api_keys",
    "idempotency_keys",
}


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no tables yet) on each engine."""
    if request.param == "sqlite":
        # A nested, not yet existing directory: make_engine must create it.
        eng = make_engine(f"sqlite:///{tmp_path / 'data' / 'csp.db'}")
        yield eng
        eng.dispose()
        return

    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip(PG_SKIP)
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
    return Registry(engine)


@pytest.fixture
def vault() -> SecretVault:
    return SecretVault(generate_key())


def _line(sub_id: str, sku: str = "CFQ7TTC0LH18:0001", quantity: int = 10) -> NewSubscription:
    return NewSubscription(
        subscription_id=sub_id,
        sku=sku,
        product_name="Microsoft 365 Business Basic",
        quantity=quantity,
        term="P1Y",
        billing_cycle="monthly",
        unit_price=Decimal("129.00"),
    )


def _order(reg: Registry, order_id: str = "ABS-1", domain: str = CONTOSO) -> None:
    reg.record_order(order_id, "a" * 64, "RSL-042", domain, "create")


def _tenant_before_0004(engine: Engine) -> None:
    """A tenant as releases before 0004 (no tenant_resellers) wrote it."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (domain, tenant_id, company_name, reseller_id, origin, "
                "created_at) VALUES (:domain, 'tid-contoso', 'Contoso', 'RSL-042', 'created', :at)"
            ),
            {"domain": CONTOSO, "at": DUE},
        )


def _tenant(reg: Registry, domain: str = CONTOSO, tenant_id: str = "tid-contoso") -> None:
    reg.record_tenant(domain, tenant_id, "Contoso México SA de CV", "RSL-042", "created")


@pytest.fixture
def licensed(registry: Registry) -> Registry:
    """ABS-1 placed in contosomx with subscription sub-1; fabrikam exists as another tenant."""
    _order(registry)
    _tenant(registry)
    _tenant(registry, FABRIKAM, "tid-fabrikam")
    registry.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1")])
    return registry


def _concurrently(fn: Callable[[], Any], n: int = 8) -> list[Any]:
    """Run fn in n threads released together; exceptions are returned, not raised."""
    barrier = threading.Barrier(n)

    def call() -> Any:
        barrier.wait()
        try:
            return fn()
        except Exception as exc:  # collected for the assertions
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


# ---------------------------------------------------------------------------------------------
# engine and migrations


def test_normalize_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///.data/csp.db").drivername == "sqlite"


def test_sqlite_engine_creates_directory_and_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "csp.db"
    eng = make_engine(f"sqlite:///{path}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert path.exists()
    finally:
        eng.dispose()


def test_migrations_apply_from_empty(engine: Engine) -> None:
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert migrate.current_revision(engine) == migrate.head_revision() == HEAD
    migrate.upgrade(engine)  # already at head: a no-op, not an error
    assert migrate.current_revision(engine) == HEAD


def test_migration_matches_the_models(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine)
    reg = Registry(engine)
    _order(reg)
    _tenant(reg)
    reg.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1")])
    with pytest.raises(DBAPIError), engine.begin() as conn:  # the trigger is back too
        conn.execute(text(f"UPDATE subscriptions SET tenant_domain = '{FABRIKAM}'"))


def _subscription_before_0006(engine: Engine, subscription_id: str) -> None:
    """A subscription as releases before 0006 wrote it (today's mapping has more columns)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscription_id, tenant_domain, order_id, sku, "
                "product_name, quantity, term, billing_cycle, unit_price, currency, status, "
                "created_at, updated_at) VALUES (:id, :domain, 'ABS-1', 'CFQ7TTC0LH18:0001', "
                "'Microsoft 365 Business Basic', 10, 'P1Y', 'monthly', 129.00, 'MXN', 'active', "
                ":due, :due)"
            ),
            {"id": subscription_id, "due": DUE, "domain": CONTOSO},
        )


def test_upgrade_from_0001_keeps_recorded_charges(engine: Engine) -> None:
    migrate.upgrade(engine, "0001")
    reg = Registry(engine)
    _order(reg)
    _tenant_before_0004(engine)
    _subscription_before_0006(engine, "sub-1")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO renewal_charges (subscription_id, period, amount, currency, status, "
                "due_at, created_at, updated_at) VALUES ('sub-1', '2026-03', 1290.00, 'MXN', "
                "'REMINDED', :due, :due, :due)"
            ),
            {"due": DUE},
        )

    migrate.upgrade(engine)

    [charge] = reg.list_charges()
    assert (charge.period, charge.amount, charge.status) == (
        "2026-03", Decimal("1290.00"), PaymentStatus.REMINDED
    )  # fmt: skip
    assert charge.escalation_level == 0
    assert reg.set_charge_status("sub-1", "2026-03", "ESCALATED", 3).escalation_level == 3
    # 0004: the tenant belongs to the reseller that recorded it.
    assert reg.tenant_resellers(CONTOSO) == {"RSL-042"}
    # 0006: the subscription keeps its tenant binding, auto-renews, and may expire.
    sub = reg.get_subscription("sub-1")
    assert sub is not None
    assert (sub.quantity, sub.auto_renew, sub.term_ends_at) == (10, True, None)
    with pytest.raises(LicenseTransferRefused):
        reg.move_subscription("sub-1", "fabrikam.onmicrosoft.com")
    assert reg.set_subscription_status("sub-1", "expired").status == "expired"


def test_from_url_migrates_sqlite(tmp_path: Path) -> None:
    reg = Registry.from_url(f"sqlite:///{tmp_path / 'x' / 'csp.db'}")
    try:
        assert migrate.current_revision(reg.engine) == HEAD
        _order(reg)
        assert reg.get_order("ABS-1") is not None
    finally:
        reg.dispose()


# ---------------------------------------------------------------------------------------------
# orders


def test_order_is_idempotent_and_refuses_another_fingerprint(registry: Registry) -> None:
    first = registry.record_order(
        "ABS-1", "a" * 64, "RSL-042", "ContosoMX.onmicrosoft.com", "create"
    )
    again = registry.record_order("ABS-1", "a" * 64, "RSL-042", CONTOSO, "create")
    assert again == first
    assert first.stage is OrderStage.RECEIVED and first.domain == CONTOSO
    with pytest.raises(OrderConflict, match="ABS-1"):
        registry.record_order("ABS-1", "b" * 64, "RSL-042", CONTOSO, "create")
    assert registry.get_order("ABS-1") == first


def test_an_order_is_recorded_at_its_opening_stage_in_the_same_write(registry: Registry) -> None:
    first = registry.record_order(
        "ABS-2", "a" * 64, "RSL-042", CONTOSO, "link", stage="LINKING_TENANT", detail="Looking up"
    )
    assert (first.stage, first.stage_detail) == (OrderStage.LINKING_TENANT, "Looking up")
    registry.set_order_stage("ABS-2", OrderStage.AWAITING_PARTNER_ACCEPTANCE, "waiting")
    # Recorded again (the step's retry): the order keeps the stage it has reached.
    again = registry.record_order("ABS-2", "a" * 64, "RSL-042", CONTOSO, "link", stage="RECEIVED")
    assert again.stage is OrderStage.AWAITING_PARTNER_ACCEPTANCE


def test_order_stage_updates(registry: Registry) -> None:
    _order(registry)
    rec = registry.set_order_stage("ABS-1", OrderStage.PLACING_ORDER, provider_order_id="PO-9")
    assert rec.stage is OrderStage.PLACING_ORDER and rec.provider_order_id == "PO-9"
    rec = registry.set_order_stage("ABS-1", "FAILED", detail="provider said no")
    assert rec.stage is OrderStage.FAILED and rec.stage_detail == "provider said no"
    assert rec.provider_order_id == "PO-9"  # kept when not given
    assert registry.get_order("missing") is None
    with pytest.raises(UnknownOrder, match="missing"):
        registry.set_order_stage("missing", OrderStage.ACTIVE)


def test_concurrent_identical_orders_record_once(registry: Registry) -> None:
    results = _concurrently(lambda: registry.record_order("ABS-7", "c" * 64, "R", CONTOSO, "link"))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.created_at for r in results}) == 1


# ---------------------------------------------------------------------------------------------
# tenants and licenses


def test_tenant_is_idempotent_and_conflicts_are_refused(registry: Registry) -> None:
    first = registry.record_tenant(
        "ContosoMX.onmicrosoft.com", "tid-1", "Contoso", "RSL", "created"
    )
    assert first.domain == CONTOSO
    assert registry.record_tenant(CONTOSO, "tid-1", "Contoso", "RSL", "created") == first
    assert registry.get_tenant("CONTOSOMX.onmicrosoft.com") == first
    with pytest.raises(TenantConflict, match="tid-1"):
        registry.record_tenant(CONTOSO, "tid-2", "Contoso", "RSL", "linked")
    with pytest.raises(TenantConflict, match=CONTOSO):
        registry.record_tenant(FABRIKAM, "tid-1", "Fabrikam", "RSL", "linked")
    assert registry.get_tenant(FABRIKAM) is None
    with pytest.raises(ValueError, match="onmicrosoft"):
        registry.record_tenant("contoso.com", "tid-3", "Contoso", "RSL", "linked")


def test_a_tenant_belongs_to_the_resellers_whose_client_accepted_them(
    registry: Registry,
) -> None:
    registry.record_tenant(CONTOSO, "tid-1", "Contoso", "RSL-042", "created")
    assert registry.tenant_resellers(CONTOSO) == {"RSL-042"}

    registry.add_tenant_reseller(CONTOSO, "RSL-077")
    registry.add_tenant_reseller(CONTOSO, "RSL-077")  # idempotent
    # Recording the same tenant again (another order) keeps its owners.
    registry.record_tenant(CONTOSO, "tid-1", "Contoso", "RSL-042", "created")

    assert registry.tenant_resellers(CONTOSO) == {"RSL-042", "RSL-077"}
    assert registry.tenant_resellers(FABRIKAM) == set()
    with pytest.raises(UnknownTenant):
        registry.add_tenant_reseller(FABRIKAM, "RSL-077")


def test_a_tenant_holds_many_licenses(registry: Registry) -> None:
    _tenant(registry)
    _tenant(registry, FABRIKAM, "tid-fabrikam")
    _order(registry, "ABS-1")
    _order(registry, "ABS-2")
    _order(registry, "ABS-3", FABRIKAM)
    registry.record_subscriptions(
        "ABS-1", CONTOSO, [_line("sub-b", "CFQ7TTC0LDPB:0001"), _line("sub-a", "CFQ7TTC0LH18:0001")]
    )
    registry.record_subscriptions("ABS-2", CONTOSO, [_line("sub-c", "CFQ7TTC0LF8Q:0001", 3)])
    registry.record_subscriptions("ABS-3", FABRIKAM, [_line("sub-d")])

    contoso = registry.list_licenses(CONTOSO)
    assert [(row.sku, row.order_id) for row in contoso] == [
        ("CFQ7TTC0LDPB:0001", "ABS-1"),
        ("CFQ7TTC0LF8Q:0001", "ABS-2"),
        ("CFQ7TTC0LH18:0001", "ABS-1"),
    ]
    assert {row.tenant_id for row in contoso} == {"tid-contoso"}
    everything = registry.list_licenses()
    assert [row.domain for row in everything] == [CONTOSO] * 3 + [FABRIKAM]
    assert everything[-1].subscription_id == "sub-d"


def test_subscriptions_are_idempotent(licensed: Registry) -> None:
    again = licensed.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1"), _line("sub-2")])
    assert [r.subscription_id for r in again] == ["sub-1", "sub-2"]
    assert (
        licensed.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1"), _line("sub-2")]) == again
    )
    assert len(licensed.list_licenses(CONTOSO)) == 2
    assert again[0].unit_price == Decimal("129.00") and again[0].currency == "MXN"


def test_subscriptions_need_a_recorded_tenant(registry: Registry) -> None:
    _order(registry)
    with pytest.raises(UnknownTenant, match=CONTOSO):
        registry.record_subscriptions("ABS-1", CONTOSO, [_line("sub-1")])


def test_subscription_status_and_keyset_listing(licensed: Registry) -> None:
    licensed.record_subscriptions("ABS-1", CONTOSO, [_line(f"sub-{i}") for i in range(2, 6)])
    when = datetime(2026, 3, 1, 10, 30, tzinfo=MEXICO)
    rec = licensed.set_subscription_status("sub-3", SubscriptionStatus.ACTIVE, activated_at=when)
    assert rec.status is SubscriptionStatus.ACTIVE and rec.activated_at == when
    assert rec.activated_at.tzinfo is UTC
    licensed.set_subscription_status("sub-4", "active")
    licensed.set_subscription_status("sub-5", "suspended")
    with pytest.raises(UnknownSubscription, match="nope"):
        licensed.set_subscription_status("nope", "active")

    page1 = licensed.list_subscriptions({"active", "suspended"}, limit=2)
    page2 = licensed.list_subscriptions({"active", "suspended"}, after=page1[-1].subscription_id)
    assert [s.subscription_id for s in page1 + page2] == ["sub-3", "sub-4", "sub-5"]


# ---------------------------------------------------------------------------------------------
# a license never moves to another tenant


def test_code_refuses_moving_a_license(licensed: Registry) -> None:
    with pytest.raises(LicenseTransferRefused) as refused:
        licensed.move_subscription("sub-1", FABRIKAM)
    message = str(refused.value)
    assert "sub-1" in message and CONTOSO in message and FABRIKAM in message
    assert "forever" in message and "new subscription" in message

    # Recording the same subscription id in another tenant is the same refusal.
    _order(licensed, "ABS-2", FABRIKAM)
    with pytest.raises(LicenseTransferRefused):
        licensed.record_subscriptions("ABS-2", FABRIKAM, [_line("sub-1")])
    assert licensed.get_subscription("sub-1").tenant_domain == CONTOSO  # type: ignore[union-attr]
    assert licensed.list_licenses(FABRIKAM) == []


def test_database_refuses_moving_a_license(licensed: Registry, engine: Engine) -> None:
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriptions SET tenant_domain = :d WHERE subscription_id = 'sub-1'"),
            {"d": FABRIKAM},
        )
    assert "bound to its tenant forever" in str(refused.value.orig)
    assert licensed.get_subscription("sub-1").tenant_domain == CONTOSO  # type: ignore[union-attr]

    # The trigger only fires on a change: other updates (and a same-value write) still work.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE subscriptions SET quantity = 12, tenant_domain = :d "
                "WHERE subscription_id = 'sub-1'"
            ),
            {"d": CONTOSO},
        )
    assert licensed.get_subscription("sub-1").quantity == 12  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# credentials


def test_credentials_are_encrypted_and_revealed_once(
    registry: Registry, engine: Engine, vault: SecretVault
) -> None:
    _order(registry)
    password = "Xq7!vR2#pL9m"
    ref = registry.store_credentials(
        "ABS-1", CONTOSO, f"admin@{CONTOSO}", SecretStr(password), vault
    )
    assert ref == credentials_ref("ABS-1") == "cred-ABS-1"
    # Storing again (a retried activity with a new random password) keeps the first one.
    assert (
        registry.store_credentials(
            "ABS-1", CONTOSO, f"admin@{CONTOSO}", SecretStr("other-password"), vault
        )
        == ref
    )

    with engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM credentials")).mappings().all()
    assert len(raw) == 1
    assert all(password not in str(value) for value in raw[0].values())

    # A vault with another key cannot decrypt, and the failed attempt does not consume the reveal.
    with pytest.raises(SecretVaultError):
        registry.reveal_credentials("ABS-1", SecretVault(generate_key()))

    username, secret = registry.reveal_credentials("ABS-1", vault)
    assert username == f"admin@{CONTOSO}" and secret.get_secret_value() == password
    with pytest.raises(CredentialsAlreadyRevealed, match="ABS-1"):
        registry.reveal_credentials("ABS-1", vault)
    with pytest.raises(CredentialsNotFound, match="ABS-404"):
        registry.reveal_credentials("ABS-404", vault)


def test_credentials_reveal_race_has_one_winner(registry: Registry, vault: SecretVault) -> None:
    _order(registry)
    registry.store_credentials("ABS-1", CONTOSO, "admin", SecretStr("s3cret-pass"), vault)
    results = _concurrently(lambda: registry.reveal_credentials("ABS-1", vault))
    winners = [r for r in results if isinstance(r, tuple)]
    assert len(winners) == 1
    assert all(isinstance(r, CredentialsAlreadyRevealed) for r in results if r not in winners)


def test_credentials_need_a_recorded_order(registry: Registry, vault: SecretVault) -> None:
    with pytest.raises(UnknownOrder):
        registry.store_credentials("ABS-9", CONTOSO, "admin", SecretStr("pw"), vault)


# ---------------------------------------------------------------------------------------------
# notifications


def test_a_notice_is_claimed_pending_and_sent_once(registry: Registry) -> None:
    key = "order-ABS-1:invitation"
    assert registry.get_notification(key) is None
    claimed = registry.begin_notification_attempt(
        key, "invitation", "compras@x.mx", order_id="ABS-1"
    )
    assert (claimed.status, claimed.attempts, claimed.sent_at) == (
        NotificationStatus.PENDING, 1, None
    )  # fmt: skip
    # The worker died before sending: the next attempt finds the claim still pending.
    again = registry.begin_notification_attempt(key, "invitation", "compras@x.mx", "ABS-1")
    assert (again.status, again.attempts) == (NotificationStatus.PENDING, 2)
    assert again.claimed_at == claimed.claimed_at

    sent = registry.mark_notification_sent(key)
    assert sent.status is NotificationStatus.SENT and sent.sent_at is not None
    assert registry.mark_notification_sent(key).sent_at == sent.sent_at  # first sent_at kept
    # A sent notice is returned untouched: no new attempt is counted.
    after = registry.begin_notification_attempt(key, "invitation", "compras@x.mx", "ABS-1")
    assert after == sent
    # A late failure report of a concurrent attempt does not undo the delivery.
    late = registry.mark_notification_failed(key, "550 refused", permanent=True)
    assert late.status is NotificationStatus.SENT and late.undeliverable_at is None


def test_transient_and_permanent_failures_are_recorded_for_ops(registry: Registry) -> None:
    key = "renewal-sub-1-2026-03:notice"
    registry.begin_notification_attempt(key, "renewal_notice", "a@b.mx", None, "sub-1", "2026-03")
    outage = registry.mark_notification_failed(
        key, "ConnectionRefusedError\n  at 127.0.0.1", permanent=False
    )
    assert outage.status is NotificationStatus.PENDING
    assert outage.last_error == "ConnectionRefusedError at 127.0.0.1"  # one line
    registry.begin_notification_attempt(key, "renewal_notice", "a@b.mx", None, "sub-1", "2026-03")
    refused = registry.mark_notification_failed(key, "550 5.1.1 " + "x" * 900, permanent=True)
    assert refused.status is NotificationStatus.UNDELIVERABLE
    assert refused.attempts == 2 and refused.sent_at is None
    assert refused.undeliverable_at is not None
    assert refused.undeliverable_reason is not None
    assert refused.undeliverable_reason.startswith("550 5.1.1 xxx")
    assert len(refused.undeliverable_reason) == 500
    # An undeliverable notice is not claimed again.
    assert (
        registry.begin_notification_attempt(
            key, "renewal_notice", "a@b.mx", None, "sub-1", "2026-03"
        )
        == refused
    )


def test_ops_list_undeliverable_and_long_pending_notices(registry: Registry) -> None:
    for key in ("n-sent", "n-pending", "n-refused"):
        registry.begin_notification_attempt(key, "invitation", "a@b.mx", order_id="ABS-1")
    registry.mark_notification_sent("n-sent")
    registry.mark_notification_failed("n-refused", "550 no such user", permanent=True)
    later = datetime.now(UTC) + timedelta(hours=1)

    def keys(**kwargs: Any) -> list[str]:
        return [n.key for n in registry.list_notifications(**kwargs)]

    assert set(keys()) == {"n-sent", "n-pending", "n-refused"}
    assert keys(status=NotificationStatus.UNDELIVERABLE) == ["n-refused"]
    assert keys(status="pending", older_than=later) == ["n-pending"]
    assert keys(status="pending", older_than=datetime.now(UTC) - timedelta(hours=1)) == []
    assert set(keys(status=["pending", "undeliverable"])) == {"n-pending", "n-refused"}
    assert keys(order_id="ABS-2") == []
    [refused] = registry.list_notifications(status=NotificationStatus.UNDELIVERABLE)
    assert refused.undeliverable_reason == "550 no such user"
    with pytest.raises(ValueError):
        registry.list_notifications(status="lost")


def test_concurrent_attempts_claim_one_row(registry: Registry) -> None:
    results = _concurrently(
        lambda: registry.begin_notification_attempt("order-ABS-1:reminder:2", "reminder", "a@b.mx")
    )
    assert all(r.status is NotificationStatus.PENDING for r in results), results
    [row] = registry.list_notifications()
    assert row.attempts == len(results)


def test_upgrade_to_0005_keeps_recorded_notices_as_sent(engine: Engine) -> None:
    migrate.upgrade(engine, "0002")
    sent_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:  # a ledger row as release 0002 wrote it (kept once sent)
        conn.execute(
            text(
                "INSERT INTO notifications (key, kind, recipient, order_id, sent_at) "
                "VALUES ('order-ABS-1:active', 'order_active', 'a@b.mx', 'ABS-1', :at)"
            ),
            {"at": sent_at},
        )
    migrate.upgrade(engine)
    reg = Registry(engine)
    row = reg.get_notification("order-ABS-1:active")
    assert row is not None
    assert (row.status, row.sent_at, row.claimed_at, row.attempts) == (
        NotificationStatus.SENT, sent_at, sent_at, 1
    )  # fmt: skip
    assert reg.begin_notification_attempt("order-ABS-1:active", "order_active", "a@b.mx") == row
    migrate.downgrade(engine, "0002")
    migrate.upgrade(engine)
    assert reg.get_notification("order-ABS-1:active") == row


# ---------------------------------------------------------------------------------------------
# renewal charges


DUE = datetime(2026, 3, 26, 0, 0, tzinfo=MEXICO)


def test_charge_upsert_is_idempotent_and_never_resets_a_paid_charge(licensed: Registry) -> None:
    first = licensed.upsert_charge("sub-1", "2026-03", Decimal("1290.00"), DUE)
    assert first.status is PaymentStatus.PENDING and first.amount == Decimal("1290.00")
    assert licensed.upsert_charge("sub-1", "2026-03", Decimal("1290.00"), DUE) == first
    assert len(licensed.list_charges()) == 1

    licensed.set_charge_status("sub-1", "2026-03", PaymentStatus.REMINDED)
    seats_added = licensed.upsert_charge("sub-1", "2026-03", Decimal("1548.00"), DUE)
    assert seats_added.id == first.id and seats_added.amount == Decimal("1548.00")
    assert seats_added.status is PaymentStatus.REMINDED

    licensed.record_payment("sub-1", "2026-03", "SPEI-1")
    after = licensed.upsert_charge("sub-1", "2026-03", Decimal("99.00"), DUE + timedelta(days=1))
    assert after.status is PaymentStatus.PAID and after.amount == Decimal("1548.00")
    assert after.due_at == DUE


def test_open_charges_paginate_by_id(licensed: Registry) -> None:
    ids = [f"sub-{i:02d}" for i in range(2, 9)]
    licensed.record_subscriptions("ABS-1", CONTOSO, [_line(i) for i in ids])
    for sub in ["sub-1", *ids]:
        licensed.upsert_charge(sub, "2026-04", Decimal("10.00"), DUE)
    licensed.upsert_charge("sub-1", "2026-05", Decimal("10.00"), DUE)  # another period
    licensed.record_payment("sub-04", "2026-04", "SPEI-4")
    licensed.set_charge_status("sub-05", "2026-04", PaymentStatus.ESCALATED)

    seen: list[str] = []
    after_id, pages = 0, 0
    while page := licensed.list_open_charges("2026-04", after_id=after_id, limit=3):
        pages += 1
        seen += [c.subscription_id for c in page]
        after_id = page[-1].id
    assert pages == 3
    assert seen == ["sub-1", "sub-02", "sub-03", "sub-05", "sub-06", "sub-07", "sub-08"]
    assert [c.subscription_id for c in licensed.list_charges("2026-04", "PAID")] == ["sub-04"]


def test_a_page_of_charges_is_billed_in_one_transaction_a_bad_charge_alone_skipped(
    licensed: Registry,
) -> None:
    """The cycle's billing (bill_periods): one transaction, a savepoint per charge. A charge
    whose amount does not fit and an unknown subscription are handed to on_error and the
    others kept; on_error raising (not one charge's fault) rolls the whole page back."""
    licensed.record_subscriptions(
        "ABS-1", CONTOSO, [_line("sub-2", quantity=10**9), _line("sub-3", quantity=2)]
    )
    subs = ["sub-1", "sub-2", "sub-missing", "sub-3"]
    starts = datetime(2026, 4, 1, tzinfo=MEXICO)
    failed: list[tuple[str, str]] = []

    billed = licensed.bill_periods(
        subs, "2026-04", starts, DUE, on_error=lambda s, e: failed.append((s, type(e).__name__))
    )

    assert billed == 2
    assert [s for s, _ in failed] == ["sub-2", "sub-missing"]
    assert failed[1][1] == "UnknownSubscription"
    amounts = {s: licensed.get_charge(s, "2026-04") for s in ["sub-1", "sub-2", "sub-3"]}
    assert amounts["sub-1"].amount == Decimal("1290.00") and amounts["sub-2"] is None
    assert amounts["sub-3"].amount == Decimal("258.00")
    assert licensed.bill_periods(subs, "2026-04", starts, DUE, on_error=lambda s, e: None) == 2

    def outage(subscription_id: str, err: Exception) -> None:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        licensed.bill_periods(subs, "2026-05", starts, DUE, on_error=outage)
    assert licensed.get_charge("sub-1", "2026-05") is None  # rolled back with the page


def test_record_payment_twice_is_harmless(licensed: Registry) -> None:
    licensed.upsert_charge("sub-1", "2026-03", Decimal("1290.00"), DUE)
    paid_at = datetime(2026, 3, 20, 12, 0, tzinfo=MEXICO)
    charge, newly = licensed.record_payment("sub-1", "2026-03", "SPEI-77", paid_at=paid_at)
    assert newly and charge.status is PaymentStatus.PAID
    assert charge.paid_amount == Decimal("1290.00") and charge.paid_at == paid_at
    again, newly_again = licensed.record_payment("sub-1", "2026-03", "SPEI-77")
    assert not newly_again and again == charge
    with pytest.raises(ChargeAlreadyPaid, match="SPEI-77"):
        licensed.record_payment("sub-1", "2026-03", "SPEI-78")


def test_concurrent_payments_apply_once(licensed: Registry) -> None:
    licensed.upsert_charge("sub-1", "2026-03", Decimal("1290.00"), DUE)
    results = _concurrently(lambda: licensed.record_payment("sub-1", "2026-03", "SPEI-1"))
    assert sorted(newly for _, newly in results) == [False] * (len(results) - 1) + [True]


def test_partial_payments_keep_the_charge_open_until_they_add_up(licensed: Registry) -> None:
    licensed.upsert_charge("sub-1", "2026-03", Decimal("1290.00"), DUE)
    first_at = datetime(2026, 3, 10, 12, 0, tzinfo=MEXICO)
    part, newly = licensed.record_payment("sub-1", "2026-03", "SPEI-A", Decimal("500"), first_at)
    assert newly and part.status is PaymentStatus.PENDING and part.is_open
    assert (part.paid_amount, part.amount_due, part.paid_at) == (
        Decimal("500.00"), Decimal("790.00"), None
    )  # fmt: skip
    same, again = licensed.record_payment("sub-1", "2026-03", "SPEI-A", Decimal("999"))
    assert not again and same == part  # a reference is one payment: nothing changes

    rest_at = datetime(2026, 3, 27, 9, 0, tzinfo=MEXICO)  # after the cutoff: late
    settled, newly = licensed.record_payment("sub-1", "2026-03", "SPEI-B", paid_at=rest_at)
    assert newly and settled.status is PaymentStatus.PAID and settled.amount_due == 0
    assert (settled.paid_amount, settled.paid_at, settled.payment_reference) == (
        Decimal("1290.00"), rest_at, "SPEI-B"
    )  # fmt: skip
    assert [(p.reference, p.amount) for p in licensed.list_payments("sub-1", "2026-03")] == [
        ("SPEI-A", Decimal("500.00")), ("SPEI-B", Decimal("790.00"))
    ]  # fmt: skip
    with pytest.raises(ChargeAlreadyPaid, match="SPEI-B"):
        licensed.record_payment("sub-1", "2026-03", "SPEI-C", Decimal("1"))


def test_the_payment_that_completes_a_charge_is_decided_by_payment_time(
    licensed: Registry,
) -> None:
    """Recorded out of order: the earlier-made payments completed it, so it was on time."""
    licensed.upsert_charge("sub-1", "2026-03", Decimal("100.00"), DUE)
    early = datetime(2026, 3, 20, 9, 0, tzinfo=MEXICO)
    licensed.record_payment("sub-1", "2026-03", "LATE", Decimal("60"), DUE + timedelta(hours=1))
    charge, _ = licensed.record_payment("sub-1", "2026-03", "EARLY", Decimal("60"), early)
    assert charge.paid_amount == Decimal("120.00")  # overpaid: shown, nothing negative due
    assert (charge.payment_reference, charge.paid_at, charge.amount_due) == (
        "LATE", DUE + timedelta(hours=1), Decimal("0.00")
    )  # fmt: skip


def test_amounts_outside_the_column_are_refused_on_every_engine(licensed: Registry) -> None:
    with pytest.raises(ValueError, match="amount"):
        licensed.upsert_charge("sub-1", "2026-03", Decimal("10000000000.00"), DUE)
    licensed.upsert_charge("sub-1", "2026-03", Decimal("9999999999.99"), DUE)
    for bad in (Decimal("0"), Decimal("-5"), Decimal("10000000000")):
        with pytest.raises(ValueError, match="amount"):
            licensed.record_payment("sub-1", "2026-03", "SPEI-X", bad)
    assert licensed.list_payments("sub-1", "2026-03") == []


def test_upgrade_to_0003_gives_paid_charges_their_payment(engine: Engine) -> None:
    migrate.upgrade(engine, "0002")
    reg = Registry(engine)
    _order(reg)
    _tenant_before_0004(engine)
    _subscription_before_0006(engine, "sub-1")
    _subscription_before_0006(engine, "sub-2")
    with engine.begin() as conn:  # one paid and one open charge, as release 0002 wrote them
        conn.execute(
            text(
                "INSERT INTO renewal_charges (subscription_id, period, amount, currency, status, "
                "due_at, paid_at, payment_reference, paid_amount, created_at, updated_at) VALUES "
                "('sub-1', '2026-03', 1290.00, 'MXN', 'PAID', :due, :due, 'SPEI-OLD', 1290.00, "
                ":due, :due), ('sub-2', '2026-03', 10.00, 'MXN', 'PENDING', :due, NULL, NULL, "
                "NULL, :due, :due)"
            ),
            {"due": DUE},
        )

    migrate.upgrade(engine)

    [payment] = reg.list_payments("sub-1", "2026-03")
    assert (payment.reference, payment.amount, payment.paid_at) == (
        "SPEI-OLD", Decimal("1290.00"), DUE
    )  # fmt: skip
    assert reg.list_payments("sub-2", "2026-03") == []
    assert not reg.record_payment("sub-1", "2026-03", "SPEI-OLD")[1]  # recognised, not new


def test_unknown_subscription_and_period_are_named(licensed: Registry) -> None:
    with pytest.raises(UnknownSubscription, match=r"sub-404.*2026-03"):
        licensed.record_payment("sub-404", "2026-03", "SPEI-1")
    with pytest.raises(UnknownCharge, match=r"sub-1.*2026-07"):
        licensed.record_payment("sub-1", "2026-07", "SPEI-1")
    with pytest.raises(UnknownCharge, match=r"sub-1.*2026-07"):
        licensed.set_charge_status("sub-1", "2026-07", "REMINDED")
    with pytest.raises(UnknownSubscription, match="sub-404"):
        licensed.upsert_charge("sub-404", "2026-03", Decimal("1"), DUE)
    with pytest.raises(ValueError, match="YYYY-MM"):
        licensed.upsert_charge("sub-1", "2026-13", Decimal("1"), DUE)
    assert licensed.get_charge("sub-1", "2026-07") is None


def test_paid_charge_is_not_reopened_by_a_late_status_update(licensed: Registry) -> None:
    licensed.upsert_charge("sub-1", "2026-03", Decimal("10.00"), DUE)
    licensed.set_charge_status("sub-1", "2026-03", "SUSPENDED")
    licensed.record_payment("sub-1", "2026-03", "SPEI-1")
    assert licensed.set_charge_status("sub-1", "2026-03", "ESCALATED").status is PaymentStatus.PAID
    reactivated = licensed.set_charge_status("sub-1", "2026-03", "REACTIVATED")
    assert reactivated.status is PaymentStatus.REACTIVATED
    assert licensed.list_open_charges("2026-03") == []


def test_datetimes_round_trip_as_aware_utc(licensed: Registry, engine: Engine) -> None:
    due = datetime(2026, 3, 25, 23, 59, 59, 123456, tzinfo=MEXICO)  # 2026-03-26 05:59:59Z
    charge = licensed.upsert_charge("sub-1", "2026-03", Decimal("10.00"), due)
    fresh = licensed.get_charge("sub-1", "2026-03")
    assert fresh is not None and fresh == charge
    for value in (fresh.due_at, fresh.created_at, fresh.updated_at):
        assert value.tzinfo is UTC
    assert fresh.due_at == due
    assert fresh.due_at.isoformat() == "2026-03-26T05:59:59.123456+00:00"
    order = licensed.get_order("ABS-1")
    assert order is not None and order.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - order.created_at) < timedelta(minutes=5)
    with pytest.raises(ValueError, match="naive"):
        licensed.upsert_charge("sub-1", "2026-04", Decimal("10.00"), datetime(2026, 4, 26))
    # Stored as UTC in the database itself, not just converted on the way out.
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        stored = conn.execute(text("SELECT due_at FROM renewal_charges")).scalar_one()
    assert str(stored).startswith("2026-03-26 05:59:59.123456")
