"""Subscriptions keep their term, auto-renew and cancellation; seat changes are a ledger.

- subscriptions: `term_started_at`, `term_ends_at` (the current term, as the provider dates it),
  `auto_renew`, `cancelled_at`; status may also be `expired` (a term ended with auto-renew off).
- seat_changes: one row per accepted seat change (idempotent by the caller's change id), with
  the prorated amount of the rest of the current billing period; the next renewal charge bills
  it (`billed_period`).

SQLite rebuilds the table to change its CHECK constraint (migrate.py turns foreign keys off for
that and checks them before committing), which drops its triggers: the trigger that keeps a
license in its tenant is created again.

Revision ID: 0006_subscription_lifecycle
Revises: 0005_notification_delivery
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_subscription_lifecycle"
down_revision: str | None = "0005_notification_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
MONEY = sa.Numeric(12, 2)
STATUSES_BEFORE = "status IN ('pending', 'active', 'suspended', 'cancelled')"
STATUSES = "status IN ('pending', 'active', 'suspended', 'cancelled', 'expired')"


# As revision 0001 created it (a migration keeps its own copy: 0001 must never change).
SQLITE_TENANT_TRIGGER = """
CREATE TRIGGER subscriptions_tenant_immutable
BEFORE UPDATE OF tenant_domain ON subscriptions
FOR EACH ROW WHEN NEW.tenant_domain IS NOT OLD.tenant_domain
BEGIN
    SELECT RAISE(ABORT, 'a license is bound to its tenant forever: subscriptions.tenant_domain \
cannot change; buy a new subscription in the other tenant');
END
"""


def _keep_tenant_trigger() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS subscriptions_tenant_immutable")
        op.execute(SQLITE_TENANT_TRIGGER)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("term_started_at", TZ, nullable=True))
        batch.add_column(sa.Column("term_ends_at", TZ, nullable=True))
        batch.add_column(
            sa.Column("auto_renew", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("cancelled_at", TZ, nullable=True))
        batch.drop_constraint("ck_subscriptions_status", type_="check")
        batch.create_check_constraint("ck_subscriptions_status", STATUSES)
    _keep_tenant_trigger()
    op.create_table(
        "seat_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(128), nullable=False),
        sa.Column("change_id", sa.String(200), nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.Column("seats_before", sa.Integer(), nullable=False),
        sa.Column("seats_after", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("prorated_until", TZ, nullable=False),
        sa.Column("proration_amount", MONEY, nullable=False),
        sa.Column("billed_period", sa.String(7), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
            name="fk_seat_changes_subscription_id_subscriptions",
        ),
        sa.UniqueConstraint(
            "subscription_id", "change_id", name="uq_seat_changes_subscription_id_change_id"
        ),
    )
    op.create_index(
        "ix_seat_changes_subscription_id_billed_period",
        "seat_changes",
        ["subscription_id", "billed_period"],
    )


def downgrade() -> None:
    op.drop_index("ix_seat_changes_subscription_id_billed_period", table_name="seat_changes")
    op.drop_table("seat_changes")
    # The release before this one knows no expired subscription: it reads as cancelled there.
    op.execute("UPDATE subscriptions SET status = 'cancelled' WHERE status = 'expired'")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint("ck_subscriptions_status", type_="check")
        batch.create_check_constraint("ck_subscriptions_status", STATUSES_BEFORE)
        for column in ("cancelled_at", "auto_renew", "term_ends_at", "term_started_at"):
            batch.drop_column(column)
    _keep_tenant_trigger()
