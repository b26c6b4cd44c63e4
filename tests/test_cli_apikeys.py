"""`csp apikey create|list|revoke` run as a subprocess, as ops run it, on a SQLite registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from csp_core.registry import ApiKeyRefused, ApiKeyScope, Registry
from tests.support.cli import csp

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXIT_INVALID, EXIT_NOT_FOUND = 2, 4


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "API_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'registry.db'}", NO_COLOR="1", COLUMNS="200")
    return env


def registry_of(env: dict[str, str]) -> Registry:
    return Registry.from_url(env["DATABASE_URL"])


async def test_a_key_is_printed_once_alone_on_stdout_and_works(env: dict[str, str]) -> None:
    made = await csp(env, "apikey", "create", "--reseller", "RSL-042", "--label", "ERP norte")

    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == key + "\n" and key.startswith("cspk_")
    key_id = key.split("_")[1]
    assert f"API key {key_id} for reseller RSL-042 (120 requests/min). Shown once" in made.stderr
    assert key not in made.stderr
    registry = registry_of(env)
    try:
        record = registry.authenticate_api_key(key)
        assert (record.scope, record.reseller_id, record.label) == (
            ApiKeyScope.RESELLER,
            "RSL-042",
            "ERP norte",
        )
    finally:
        registry.dispose()

    listed = await csp(env, "apikey", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "reseller RSL-042" in listed.stdout
    assert "ERP norte" in listed.stdout and key not in listed.stdout
    as_json = json.loads((await csp(env, "apikey", "list", "--json")).stdout)
    assert [(row["key_id"], row["reseller_id"]) for row in as_json] == [(key_id, "RSL-042")]
    assert "key_hash" not in as_json[0] and key not in json.dumps(as_json)


async def test_an_ops_key_with_its_own_rate_then_revoked(env: dict[str, str]) -> None:
    made = await csp(env, "apikey", "create", "--ops", "--rate-per-minute", "30")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = key.split("_")[1]
    assert f"API key {key_id} for ops (30 requests/min)" in made.stderr

    revoked = await csp(env, "apikey", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"API key {key_id} (ops) revoked"
    again = await csp(env, "apikey", "revoke", key_id)
    assert again.returncode == 0 and "already revoked" in again.stdout
    registry = registry_of(env)
    try:
        with pytest.raises(ApiKeyRefused, match="revoked"):
            registry.authenticate_api_key(key)
    finally:
        registry.dispose()
    assert key_id not in (await csp(env, "apikey", "list")).stdout
    assert f"{key_id}  ops" in (await csp(env, "apikey", "list", "--all")).stdout


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["create"], EXIT_INVALID, "give exactly one of --reseller RESELLER_ID or --ops"),
        (["create", "--ops", "--reseller", "RSL-042"], EXIT_INVALID, "give exactly one of"),
        (["create", "--reseller", "RSL 042"], EXIT_INVALID, "--reseller: must be 1-64 letters"),
        (["create", "--ops", "--rate-per-minute", "0"], EXIT_INVALID, "--rate-per-minute: a"),
        (["revoke", "cspk_abc_def"], EXIT_INVALID, "KEY_ID: a key id is 16 letters"),
        (["revoke", "a" * 16], EXIT_NOT_FOUND, f"no API key {'a' * 16}"),
    ],
    ids=["none", "both", "reseller", "rate", "key-not-id", "unknown"],
)
async def test_bad_input_and_unknown_keys(
    env: dict[str, str], args: list[str], code: int, expected: str
) -> None:
    result = await csp(env, "apikey", *args)

    assert result.returncode == code, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
