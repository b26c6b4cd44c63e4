"""The API forgets Idempotency-Keys past their retention when it starts (and hourly after)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from csp_core.registry import Registry
from csp_core.settings import Settings
from http_api import create_app
from tests.support.http_api import serving

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_keys_older_than_the_retention_are_forgotten_when_the_api_starts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'csp.db'}"
    registry = Registry.from_settings(Settings(database_url=url))
    try:
        for key in ("31-days", "29-days"):
            registry.claim_idempotency_key("payments", key, "a" * 64, "POST /v1/payments")
        with registry.engine.begin() as conn:
            for key, days in (("31-days", 31), ("29-days", 29)):
                at = datetime.now(UTC) - timedelta(days=days)
                conn.execute(
                    text("UPDATE idempotency_keys SET created_at = :at WHERE key = :key"),
                    {"at": at, "key": key},
                )
        settings = Settings(database_url=url, idempotency_key_retention_days=30)

        async with serving(create_app(settings, registry=registry)):
            for _ in range(200):  # the clean-up runs beside start-up
                with registry.engine.connect() as conn:
                    keys = {r[0] for r in conn.execute(text("SELECT key FROM idempotency_keys"))}
                if keys == {"29-days"}:
                    break
                await asyncio.sleep(0.05)

        assert keys == {"29-days"}
    finally:
        registry.dispose()
