"""HTTP API callers: their keys (hashed) and the Idempotency-Keys they used.

- api_keys: one row per key, made with `csp apikey create --reseller R | --ops`; only the
  SHA-256 digest of the key is stored (it is shown once), with its scope (a reseller's key acts
  for that reseller only, an ops key for everyone), an optional per-key rate and revocation.
- idempotency_keys: per scope (a subscription, or payments) and key, a digest of the request
  it was first used for and, once that succeeded, its answer (a repeat gets it back).

Revision ID: 0007_api_keys
Revises: 0006_subscription_lifecycle
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_api_keys"
down_revision: str | None = "0006_subscription_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("reseller_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        sa.CheckConstraint("scope IN ('reseller', 'ops')", name="ck_api_keys_scope"),
        sa.CheckConstraint(
            "(scope = 'reseller' AND reseller_id IS NOT NULL) "
            "OR (scope = 'ops' AND reseller_id IS NULL)",
            name="ck_api_keys_scope_reseller",
        ),
        sa.CheckConstraint(
            "rate_per_minute IS NULL OR rate_per_minute > 0", name="ck_api_keys_rate_positive"
        ),
    )
    op.create_index("ix_api_keys_reseller_id", "api_keys", ["reseller_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("request", sa.String(300), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("completed_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_api_keys_reseller_id", table_name="api_keys")
    op.drop_table("api_keys")
