"""Renewal payments: a charge may be paid in parts; each payment is kept, once per reference.

The charge's `paid_amount` is the running total; it is settled (`paid_at`, `payment_reference`
of the payment that completed it) when the total reaches its amount. Charges paid before this
revision get their one payment row.

Revision ID: 0003_renewal_payments
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_renewal_payments"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(12, 2)
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "renewal_payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("paid_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"],
            ["renewal_charges.id"],
            name="fk_renewal_payments_charge_id_renewal_charges",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_renewal_payments"),
        sa.UniqueConstraint(
            "charge_id", "reference", name="uq_renewal_payments_charge_id_reference"
        ),
    )
    # Charges paid before: their one payment, for the whole amount unless recorded otherwise.
    op.execute(
        "INSERT INTO renewal_payments (charge_id, reference, amount, paid_at, recorded_at) "
        "SELECT id, COALESCE(payment_reference, 'registered'), COALESCE(paid_amount, amount), "
        "paid_at, updated_at FROM renewal_charges WHERE paid_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("renewal_payments")
