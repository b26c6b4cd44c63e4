"""Initial registry: tenants, orders, subscriptions, credentials, notifications, charges.

Also installs the database-level guarantee that a license never moves to another tenant: a
trigger refusing any UPDATE that changes subscriptions.tenant_domain (SQLite and PostgreSQL).

Revision ID: 0001
Revises:
Create Date: 2026-01-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
MONEY = sa.Numeric(12, 2)

TRANSFER_MESSAGE = (
    "a license is bound to its tenant forever: subscriptions.tenant_domain cannot change; "
    "buy a new subscription in the other tenant"
)

SQLITE_TRIGGER = f"""
CREATE TRIGGER subscriptions_tenant_immutable
BEFORE UPDATE OF tenant_domain ON subscriptions
FOR EACH ROW WHEN NEW.tenant_domain IS NOT OLD.tenant_domain
BEGIN
    SELECT RAISE(ABORT, '{TRANSFER_MESSAGE}');
END
"""

PG_FUNCTION = f"""
CREATE FUNCTION subscriptions_tenant_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant_domain IS DISTINCT FROM OLD.tenant_domain THEN
        RAISE EXCEPTION 'subscription %: {TRANSFER_MESSAGE} (bound to %, refused %)',
            OLD.subscription_id, OLD.tenant_domain, NEW.tenant_domain
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$
"""

PG_TRIGGER = """
CREATE TRIGGER subscriptions_tenant_immutable
BEFORE UPDATE OF tenant_domain ON subscriptions
FOR EACH ROW EXECUTE FUNCTION subscriptions_tenant_immutable()
"""


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("company_name", sa.String(200), nullable=False),
        sa.Column("reseller_id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint("origin IN ('created', 'linked')", name="ck_tenants_origin"),
        sa.PrimaryKeyConstraint("domain", name="pk_tenants"),
        sa.UniqueConstraint("tenant_id", name="uq_tenants_tenant_id"),
    )
    op.create_index("ix_tenants_reseller_id", "tenants", ["reseller_id"])

    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("reseller_id", sa.String(64), nullable=False),
        sa.Column("reseller_name", sa.String(200), nullable=True),
        sa.Column("reseller_email", sa.String(320), nullable=True),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("tenant_mode", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(40), nullable=False),
        sa.Column("stage_detail", sa.Text(), nullable=True),
        sa.Column("provider_order_id", sa.String(128), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("tenant_mode IN ('create', 'link')", name="ck_orders_tenant_mode"),
        sa.PrimaryKeyConstraint("order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_reseller_id", "orders", ["reseller_id"])
    op.create_index("ix_orders_domain", "orders", ["domain"])

    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.String(128), nullable=False),
        sa.Column("tenant_domain", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("product_name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(8), nullable=False),
        sa.Column("billing_cycle", sa.String(16), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), server_default="MXN", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("activated_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_subscriptions_quantity_positive"),
        sa.CheckConstraint("term IN ('P1M', 'P1Y', 'P3Y')", name="ck_subscriptions_term"),
        sa.CheckConstraint(
            "billing_cycle IN ('monthly', 'annual')", name="ck_subscriptions_billing_cycle"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'suspended', 'cancelled')",
            name="ck_subscriptions_status",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_domain"], ["tenants.domain"], name="fk_subscriptions_tenant_domain_tenants"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.order_id"], name="fk_subscriptions_order_id_orders"
        ),
        sa.PrimaryKeyConstraint("subscription_id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_tenant_domain", "subscriptions", ["tenant_domain"])
    op.create_index("ix_subscriptions_order_id", "subscriptions", ["order_id"])

    op.create_table(
        "credentials",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("admin_username", sa.String(320), nullable=False),
        sa.Column("password_ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revealed_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.order_id"], name="fk_credentials_order_id_orders"
        ),
        sa.PrimaryKeyConstraint("order_id", name="pk_credentials"),
    )

    op.create_table(
        "notifications",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("subscription_id", sa.String(128), nullable=True),
        sa.Column("period", sa.String(7), nullable=True),
        sa.Column("sent_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_notifications"),
    )
    op.create_index("ix_notifications_order_id", "notifications", ["order_id"])
    op.create_index("ix_notifications_subscription_id", "notifications", ["subscription_id"])

    op.create_table(
        "renewal_charges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), server_default="MXN", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("paid_at", TZ, nullable=True),
        sa.Column("payment_reference", sa.String(128), nullable=True),
        sa.Column("paid_amount", MONEY, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
            name="fk_renewal_charges_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_renewal_charges"),
        sa.UniqueConstraint(
            "subscription_id", "period", name="uq_renewal_charges_subscription_id_period"
        ),
    )
    op.create_index(
        "ix_renewal_charges_period_status_id", "renewal_charges", ["period", "status", "id"]
    )

    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS subscriptions_tenant_immutable ON subscriptions")
        op.execute("DROP FUNCTION IF EXISTS subscriptions_tenant_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS subscriptions_tenant_immutable")
    op.drop_table("renewal_charges")
    op.drop_table("notifications")
    op.drop_table("credentials")
    op.drop_table("subscriptions")
    op.drop_table("orders")
    op.drop_table("tenants")
