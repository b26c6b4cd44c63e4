"""Tenants belong to the resellers whose client accepted them (tenant_resellers).

Every existing tenant belongs to the reseller that recorded it.

Revision ID: 0004_tenant_resellers
Revises: 0003_renewal_payments
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_tenant_resellers"
down_revision: str | None = "0003_renewal_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_resellers",
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("reseller_id", sa.String(64), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", "reseller_id", name="pk_tenant_resellers"),
        sa.ForeignKeyConstraint(
            ["domain"], ["tenants.domain"], name="fk_tenant_resellers_domain_tenants"
        ),
    )
    op.execute(
        "INSERT INTO tenant_resellers (domain, reseller_id, via, since) "
        "SELECT domain, reseller_id, origin, created_at FROM tenants"
    )


def downgrade() -> None:
    op.drop_table("tenant_resellers")
