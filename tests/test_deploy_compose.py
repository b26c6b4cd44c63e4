"""The production deployment, checked without a Docker engine: docker-compose.yml against the
Compose Specification's JSON schema (as shipped by check-jsonschema from PyPI, installed by
`make install`: nothing is downloaded here), then what an operator relies on: every service
waits for the health of what it needs, no secret is written in the file, the images are the
current Temporal ones, the search attributes are the contract's, and the image is built from a
multi-stage Dockerfile that runs as a user without privileges and never sees .data/."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from csp_core.settings import Settings
from temporalutil import search_attributes as sa
from tests.support.compose import MissingVariable, interpolate, load_yaml, variables

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$|_KEYS$")

# What an operator puts in .env (placeholders, not secrets).
ENVIRONMENT = {
    "POSTGRES_PASSWORD": "pg-superuser-password",
    "TEMPORAL_DB_PASSWORD": "temporal-db-password",
    "CSP_DB_PASSWORD": "csp-db-password",
    "SECRETS_KEY": "fernet-key",
    "PAYLOAD_ENCRYPTION_KEYS": "payload-key",
    "PROVIDER": "ingram",
    "PROVIDER_BASE_URL": "https://api.ingrammicro.com",
    "PARTNER_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "PARTNER_MPN_ID": "1234567",
    "SMTP_HOST": "smtp-relay.marketplace.mx",
    "MAIL_FROM": "Marketplace <licencias@marketplace.mx>",
    "OPS_EMAIL": "operaciones@marketplace.mx",
    # Passed through (null in the file) when set:
    "INGRAM_CLIENT_ID": "ingram-client",
    "INGRAM_CLIENT_SECRET": "ingram-secret",
    "INGRAM_CUSTOMER_NUMBER": "20-222222",
    "SMTP_USERNAME": "relay-user",
    "SMTP_PASSWORD": "relay-password",
}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, ENVIRONMENT)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping throughout"
    return env


def depends(service: dict[str, Any]) -> dict[str, str]:
    """{service it waits for: condition}; a bare list would mean 'started', not 'healthy'."""
    found = service.get("depends_on") or {}
    assert isinstance(found, dict), f"depends_on must name a condition: {found}"
    return {name: spec["condition"] for name, spec in found.items()}


# ---------------------------------------------------------------------------------------------
# the Compose Specification


def test_the_compose_file_is_valid_against_the_compose_specification(
    raw: dict[str, Any], compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    for document in (raw, compose):  # as written, and as docker compose runs it
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_catches_a_mistake(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["depends_on"]["temporal"]["condition"] = "service_ready"
    broken["services"]["worker"]["restart_policy"] = "always"
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
    assert errors


# ---------------------------------------------------------------------------------------------
# what an operator relies on


def test_required_settings_stop_compose_naming_the_variable(raw: dict[str, Any]) -> None:
    for name in ("SECRETS_KEY", "CSP_DB_PASSWORD", "PROVIDER", "SMTP_HOST", "OPS_EMAIL"):
        missing = {k: v for k, v in ENVIRONMENT.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw, missing)
        with pytest.raises(MissingVariable, match=name):  # empty counts as missing
            interpolate(raw, {**ENVIRONMENT, name: ""})


def test_no_secret_is_written_in_the_file(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for name, service in services(raw).items():
        for key, value in environment(service).items():
            if not SECRET_NAME.search(key):
                continue
            # Passed through from the environment (null), or a required ${VAR:?...}.
            if value is None:
                continue
            refs = variables(str(value))
            assert refs and all(op in (":?", "?") for _, op, _ in refs), (name, key, value)
            assert re.fullmatch(r"(\$\{[^}]+\})+", str(value)), (name, key, value)
    # Nor inside a URL: the database URL takes its password from the environment.
    for url in re.findall(r"postgresql\+psycopg://\S*", text):
        assert re.match(r"postgresql\+psycopg://\$\{CSP_DB_USER:-csp\}:\$\{CSP_DB_PASSWORD:\?", url)
    assert "temporal:temporal" not in text and "sandbox-token" not in text


def test_every_service_waits_for_the_health_of_what_it_needs(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        for needed, condition in depends(service).items():
            target = all_services[needed]
            if condition == "service_healthy":
                # Declared here: none of the images used declares a HEALTHCHECK of its own.
                assert "healthcheck" in target, f"{name} waits for {needed}'s health check"
            else:
                assert condition == "service_completed_successfully", (name, needed, condition)
                assert str(target.get("restart", "no")).startswith(("no", "on-failure")), needed
        env = environment(service)
        # Whatever talks to PostgreSQL waits for it to be healthy (init script done).
        if any("postgresql" in str(value) for value in env.values()):
            assert depends(service).get("postgresql") == "service_healthy", name
        # Whatever talks to Temporal waits for its health; csp processes also for the
        # namespace and search attributes.
        if env.get("TEMPORAL_ADDRESS") == "temporal:7233":
            assert depends(service).get("temporal") == "service_healthy" or (
                depends(service).get("temporal-namespace") == "service_completed_successfully"
                and name == "temporal-namespace"
            ), name
        if env.get("DEPLOYMENT") == "production":
            assert depends(service).get("temporal-namespace") == "service_completed_successfully"
    # The server starts only on a schema set up by Temporal's own tool.
    assert depends(all_services["temporal"])["temporal-schema"] == "service_completed_successfully"


def test_the_images_are_the_current_temporal_ones(compose: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in services(compose).items() if "image" in s}
    text = COMPOSE.read_text()
    assert "auto-setup" not in text  # deprecated: schema and namespace in one image
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-namespace"].startswith("temporalio/admin-tools:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    # One version for server and admin tools, pinned (never latest).
    versions = {images[n].split(":")[1] for n in ("temporal", "temporal-schema")}
    assert len(versions) == 1 and "latest" not in versions


def test_the_worker_restarts_is_health_checked_and_replicated(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert worker["restart"] == "unless-stopped"
    assert "9464/metrics" in " ".join(worker["healthcheck"]["test"])
    assert int(worker["deploy"]["replicas"]) >= 2
    assert environment(worker)["METRICS_ADDRESS"] == "0.0.0.0:9464"
    # SMTP relay settings.
    env = environment(worker)
    assert env["SMTP_HOST"] == ENVIRONMENT["SMTP_HOST"]
    assert (env["SMTP_PORT"], env["SMTP_STARTTLS"]) == ("587", "true")
    assert "SMTP_USERNAME" in env and "SMTP_PASSWORD" in env
    # Its command is the worker's entry point in the image.
    assert worker["command"] == ["python", "worker.py"]


def test_the_csp_services_environment_is_a_valid_production_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the worker, the API and the schedule read is accepted by Settings, production guard
    included (no sandbox URL, token or example address), as docker compose would pass it."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for service in ("worker", "api", "renewal-schedule"):
        env = environment(services(compose)[service])
        resolved = {k: ENVIRONMENT.get(k) if v is None else str(v) for k, v in env.items()}
        with monkeypatch.context() as scoped:
            for key, value in resolved.items():
                if value is not None:
                    scoped.setenv(key, value)
            settings = Settings()
        assert settings.deployment.value == "production"
        assert settings.provider.value == "ingram"
        assert settings.database_url.startswith("postgresql+psycopg://csp:csp-db-password@")
        assert settings.smtp_starttls and settings.smtp_port == 587
        assert settings.temporal_namespace == "csp-orchestrator"


def test_the_services_of_the_issue_are_there(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    assert {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "codec-server",
        "worker",
        "api",
        "renewal-schedule",
    } <= set(all_services)
    assert all_services["codec-server"]["command"][:3] == ["csp", "codec", "serve"]
    ui = environment(all_services["temporal-ui"])
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8081"
    # Published ports are local only: a proxy with authentication stands in front.
    for name, service in all_services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_bind_mounts_exist_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)


def test_the_postgres_init_script_creates_all_three_databases(compose: dict[str, Any]) -> None:
    postgres = services(compose)["postgresql"]
    mounts = [str(v) for v in postgres["volumes"]]
    assert any(m.endswith(":/docker-entrypoint-initdb.d/10-databases.sh:ro") for m in mounts)
    script = (ROOT / "deploy/postgres/init-databases.sh").read_text()
    for database in ("temporal", "temporal_visibility", "csp"):
        assert f"-{database}}}" in script or f":-{database}}}" in script, database


def test_the_temporal_schema_is_set_up_by_the_admin_tools(compose: dict[str, Any]) -> None:
    job = services(compose)["temporal-schema"]
    assert job["entrypoint"] == ["/bin/sh", "/deploy/temporal/setup-schema.sh"]
    script = (ROOT / "deploy/temporal/setup-schema.sh").read_text()
    assert "temporal-sql-tool --plugin postgres12" in script
    assert "setup-schema -v 0.0" in script and "update-schema -d" in script
    assert '"$SCHEMA_DIR/$schema/versioned"' in script
    assert "temporal_visibility}:visibility" in script


def test_the_namespace_gets_a_retention_and_the_contracts_search_attributes(
    compose: dict[str, Any],
) -> None:
    job = services(compose)["temporal-namespace"]
    assert environment(job)["TEMPORAL_RETENTION"] == "30d"
    script = (ROOT / "deploy/temporal/setup-namespace.sh").read_text()
    assert '--retention "$RETENTION"' in script
    listed = re.search(r'SEARCH_ATTRIBUTES="\n(.*?)"', script, re.S)
    assert listed is not None
    registered = dict(line.split("=") for line in listed.group(1).split())
    cli_types = {"KEYWORD": "Keyword", "INT": "Int", "BOOL": "Bool", "DATETIME": "Datetime"}
    cli_types["KEYWORD_LIST"] = "KeywordList"
    contract = {key.name: cli_types[key.indexed_value_type.name] for key in sa.ALL}
    assert registered == contract


# ---------------------------------------------------------------------------------------------
# the image


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


def test_the_image_is_multi_stage_runs_unprivileged_and_never_copies_data() -> None:
    dockerfile = DOCKERFILE.read_text()
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    final = stages[-1]
    users = re.findall(r"(?m)^USER\s+(\S+)", final)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copies = re.findall(r"(?m)^COPY\s+(.*)$", dockerfile)
    for copy in copies:
        assert ".data" not in copy and ".venv" not in copy and "secrets.key" not in copy, copy
        assert not re.fullmatch(r"(--\S+\s+)*\.\s+\S+", copy), f"copies the whole context: {copy}"
    # The final stage takes the virtualenv from the build stage, not the sources.
    assert re.search(r"(?m)^COPY --from=build /opt/venv /opt/venv$", final)


def test_the_dockerignore_keeps_data_venv_and_git_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".data/", ".venv/", ".git/"} <= ignored
    assert ".env" in ignored
    # ... while everything the Dockerfile copies stays in the context.
    for copy in re.findall(r"(?m)^COPY (?!--from)(?:--\S+ )*(.*) \S+$", DOCKERFILE.read_text()):
        for source in copy.split():
            assert (ROOT / source).exists(), source
            assert f"{source}/" not in ignored and source not in ignored, source


def test_the_image_holds_every_package_the_project_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    modules = project["tool"]["setuptools"]["py-modules"]
    copied = " ".join(re.findall(r"(?m)^COPY (?!--from)(.*)$", DOCKERFILE.read_text()))
    for package in packages:
        assert f" ./{package.rstrip('*')}" in copied, package
    for module in modules:
        assert f"{module}.py" in copied, module


# ---------------------------------------------------------------------------------------------
# monitoring


def test_the_grafana_dashboard_uses_the_metrics_we_expose() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/csp-orchestrator.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    names = set(re.findall(r"\b((?:csp|temporal|process)_[a-z_]+)", " ".join(exprs)))
    business = {
        "csp_orders",
        "csp_renewal_charges",
        "csp_renewal_charges_amount_mxn",
        "csp_notices",
        "csp_registry_up",
        "csp_provider_calls_total",
        "csp_provider_errors_total",
        "csp_provider_call_duration_seconds_bucket",
    }
    # The SDK runtime's metrics (temporalutil/metrics.py names them as its exporter does).
    runtime = {
        "temporal_workflow_completed_total",
        "temporal_workflow_failed_total",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_worker_task_slots_available",
        "temporal_sticky_cache_size",
        "temporal_request_failure_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }
    assert {n for n in names if n.startswith("csp_")} == business
    assert names - business <= runtime
    assert any("csp_orders" in e for e in exprs) and any("csp_provider_calls" in e for e in exprs)
