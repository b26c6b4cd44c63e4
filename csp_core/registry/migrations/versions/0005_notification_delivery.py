"""The e-mail ledger records delivery: pending (claimed, not yet confirmed), sent, undeliverable.

A claim no longer means "sent": a worker that dies between claiming and sending leaves a pending
row, which the next attempt sends. Rows written before this revision were only kept once sent,
so they become `sent` (one attempt, claimed when sent).

Revision ID: 0005_notification_delivery
Revises: 0004_tenant_resellers
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_notification_delivery"
down_revision: str | None = "0004_tenant_resellers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="sent"))
        batch.add_column(sa.Column("claimed_at", TZ, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_attempt_at", TZ, nullable=True))
        batch.add_column(sa.Column("last_error", sa.String(500), nullable=True))
        batch.add_column(sa.Column("undeliverable_at", TZ, nullable=True))
        batch.add_column(sa.Column("undeliverable_reason", sa.String(500), nullable=True))
        batch.alter_column("sent_at", existing_type=TZ, nullable=True)
    op.execute(
        "UPDATE notifications SET claimed_at = sent_at, last_attempt_at = sent_at, attempts = 1"
    )
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("claimed_at", existing_type=TZ, nullable=False)
        batch.create_check_constraint(
            "ck_notifications_status", "status IN ('pending', 'sent', 'undeliverable')"
        )
        batch.create_index("ix_notifications_status_claimed_at", ["status", "claimed_at"])


def downgrade() -> None:
    # Release 0002 kept sent notices only: a pending row would read as sent there, and an
    # undeliverable one would never be retried, so both are dropped (the next attempt sends).
    op.execute("DELETE FROM notifications WHERE status <> 'sent'")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_status_claimed_at")
        batch.drop_constraint("ck_notifications_status", type_="check")
        batch.alter_column("sent_at", existing_type=TZ, nullable=False)
        for column in (
            "undeliverable_reason",
            "undeliverable_at",
            "last_error",
            "last_attempt_at",
            "attempts",
            "claimed_at",
            "status",
        ):
            batch.drop_column(column)
