"""The deployment's parts that run here, for real: the PostgreSQL init script on the local
server (three databases, each owned by its role), two worker processes started together as
replicas on the csp database it made (migrating it as its owner, not as a superuser) that take
an order to ACTIVE, and the namespace script's `temporal` commands against the Temporal dev
server (retention and the contract's search attributes, twice without harm).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from csp_core.registry import Registry
from sandbox.smtp_sink import SmtpSink
from temporalutil import search_attributes as sa
from temporalutil.converter import DATA_CONVERTER
from tests.conftest import SANDBOX_TOKEN
from tests.support.worker_process import (
    run_create_order,
    sample,
    scrape_until,
    worker_processes,
    worker_settings,
)

ROOT = Path(__file__).resolve().parents[1]
INIT_SCRIPT = ROOT / "deploy/postgres/init-databases.sh"
NAMESPACE_SCRIPT = ROOT / "deploy/temporal/setup-namespace.sh"
TEMPORAL_CLI = ROOT / ".venv" / "bin" / "temporal"
PG_SKIP = "TEST_DATABASE_URL is unset: PostgreSQL deployment tests skipped"


@dataclass(frozen=True)
class Databases:
    """What init-databases.sh made, under names of this test's own."""

    admin_env: dict[str, str]
    prefix: str
    csp_url: str

    def psql(self, sql: str) -> str:
        return subprocess.run(
            ["psql", "--no-psqlrc", "-tAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=self.admin_env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()


def run_init_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INIT_SCRIPT)], env=env, check=True, capture_output=True, text=True
    )


@pytest.fixture
def databases() -> Iterator[Databases]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip(PG_SKIP)
    if shutil.which("psql") is None:
        pytest.skip("psql (PostgreSQL's client) is not installed")
    admin = make_url(url)
    prefix = f"deploy_{secrets.token_hex(4)}"
    admin_env = {
        "PATH": os.environ["PATH"],
        "PGHOST": admin.host or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        "PGDATABASE": admin.database or "postgres",
        # As the postgres image's entrypoint runs it: POSTGRES_USER / POSTGRES_DB.
        "POSTGRES_USER": admin.username or "postgres",
        "POSTGRES_DB": admin.database or "postgres",
        "PGUSER": admin.username or "postgres",
        **({"PGPASSWORD": admin.password} if admin.password else {}),
    }
    script_env = {
        **admin_env,
        "TEMPORAL_DB_USER": f"{prefix}_temporal",
        "TEMPORAL_DB_PASSWORD": secrets.token_urlsafe(12),
        "TEMPORAL_DB_NAME": f"{prefix}_temporal",
        "TEMPORAL_VISIBILITY_DB_NAME": f"{prefix}_temporal_visibility",
        "CSP_DB_USER": f"{prefix}_csp",
        "CSP_DB_PASSWORD": secrets.token_urlsafe(12),
        "CSP_DB_NAME": f"{prefix}_csp",
    }
    made = Databases(
        admin_env,
        prefix,
        admin.set(
            drivername="postgresql+psycopg",
            username=script_env["CSP_DB_USER"],
            password=script_env["CSP_DB_PASSWORD"],
            database=script_env["CSP_DB_NAME"],
        ).render_as_string(hide_password=False),
    )
    try:
        first = run_init_script(script_env)
        again = run_init_script(script_env)  # idempotent: an existing volume can run it again
        assert "CREATE DATABASE" in first.stdout and "CREATE DATABASE" not in again.stdout
        yield made
    finally:
        for suffix in ("temporal", "temporal_visibility", "csp"):
            made.psql(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)')
        for suffix in ("temporal", "csp"):
            made.psql(f'DROP ROLE IF EXISTS "{prefix}_{suffix}"')


@pytest.mark.postgres
def test_the_init_script_makes_three_databases_each_owned_by_its_role(
    databases: Databases,
) -> None:
    owners = databases.psql(
        "SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database "
        f"WHERE datname LIKE '{databases.prefix}%' ORDER BY datname"
    ).split()
    p = databases.prefix
    assert owners == [
        f"{p}_csp={p}_csp",
        f"{p}_temporal={p}_temporal",
        f"{p}_temporal_visibility={p}_temporal",
    ]
    # Neither role is a superuser; nobody else may connect.
    assert databases.psql(f"SELECT bool_or(rolsuper) FROM pg_roles WHERE rolname LIKE '{p}%'")
    assert (
        databases.psql(f"SELECT has_database_privilege('{p}_temporal', '{p}_csp', 'CONNECT')")
        == "f"
    )


@pytest.mark.postgres
async def test_worker_replicas_on_postgresql_take_an_order_to_active(
    databases: Databases,
    ts_env: WorkflowEnvironment,
    sandbox: httpx.Client,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    config = worker_settings(ts_env, sandbox, SANDBOX_TOKEN, smtp_sink, databases.csp_url)
    folders = [tmp_path / "worker-1", tmp_path / "worker-2"]
    for folder in folders:
        folder.mkdir()
    # Two replicas start at once on an empty database: each migrates it on start, one at a
    # time (an advisory lock), as the compose file's worker replicas do.
    with worker_processes(config, folders) as workers:
        registry = Registry.from_url(databases.csp_url)
        try:
            order_id = await run_create_order(ts_env, registry, workers[0], config["TASK_QUEUE"])
            recorded = registry.get_order(order_id)
            assert recorded is not None and recorded.stage.value == "ACTIVE"
        finally:
            registry.dispose()
        scraped = [await scrape_until(w, "csp_orders", stage="ACTIVE") for w in workers]

    # Both replicas read the one registry: the same count, whichever did the work.
    assert [sample(s, "csp_orders", stage="ACTIVE") for s in scraped] == [1, 1]
    calls = [sample(s, "csp_provider_calls_total", operation="place_order") or 0 for s in scraped]
    assert sum(calls) == 1
    # The registry's tables, created by the migrations as the csp role (their owner).
    owned = databases.psql(
        f"SELECT count(*) FROM pg_tables WHERE tableowner = '{databases.prefix}_csp'"
    )
    assert owned == "0"  # pg_tables lists the admin's database: look in the csp one instead
    tables = Databases(
        {**databases.admin_env, "PGDATABASE": f"{databases.prefix}_csp"},
        databases.prefix,
        databases.csp_url,
    ).psql(f"SELECT count(*) FROM pg_tables WHERE tableowner = '{databases.prefix}_csp'")
    assert int(tables) >= 7


async def test_the_namespace_script_sets_retention_and_search_attributes(
    tmp_path: Path,
) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
    )
    async with env:
        address = env.client.service_client.config.target_host
        script_env = {
            "PATH": f"{TEMPORAL_CLI.parent}:{os.environ['PATH']}",
            "HOME": str(tmp_path),  # no operator's CLI configuration
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": "csp-orchestrator",
            "TEMPORAL_RETENTION": "45d",
        }
        for _ in range(2):  # the second run finds everything in place
            done = await asyncio.to_thread(
                subprocess.run,
                ["sh", str(NAMESPACE_SCRIPT)],
                env=script_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        assert "search attribute OrderStage: present" in done.stdout

        described = await env.client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="csp-orchestrator")
        )
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="csp-orchestrator")
        )

    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    assert retention == timedelta(days=45)
    registered = dict(listed.custom_attributes)
    assert {key.name: registered.get(key.name) for key in sa.ALL} == {
        key.name: key.indexed_value_type.value for key in sa.ALL
    }
