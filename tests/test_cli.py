"""The real CLI, run as a subprocess the way order systems and ops run it.

Bad input must fail with exit code 2 and a message naming the field and the rule *before*
anything starts: TEMPORAL_ADDRESS points at a port nobody listens on (or at a sentinel socket
that records connection attempts), so a CLI that tried to reach Temporal first would fail with
a connection error instead, or be caught connecting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from csp_core.orders.models import parse_order
from csp_core.registry import Registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "order-create.json"
EXIT_INVALID, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 2, 3, 4, 5
# Import of the CLI takes ~2 s; a validation failure must not take much more than that.
QUICK_SECONDS = 20

Mutation = Callable[[dict[str, Any]], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of every run: storage in tmp_path, Temporal at a closed local port."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "DATABASE_", "SECRETS_"))
    }
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{_free_port()}",  # closed again: nothing listens there
        DATABASE_URL=f"sqlite:///{tmp_path / 'registry.db'}",
        SECRETS_KEY_FILE=str(tmp_path / "secrets.key"),
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
    )
    return env


def csp(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def order_file(tmp_path: Path, mutate: Mutation | None = None, name: str = "order.json") -> Path:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    if mutate is not None:
        mutate(data)
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def item(field: str, value: Any) -> Mutation:
    return lambda data: data["items"][0].__setitem__(field, value)


def tenant(field: str, value: Any) -> Mutation:
    return lambda data: data["tenant"].__setitem__(field, value)


def p1m_annual(data: dict[str, Any]) -> None:
    data["items"][0].update(term="P1M", billing_cycle="annual")


def assert_refused_before_starting(
    result: subprocess.CompletedProcess[str], elapsed: float
) -> None:
    assert result.returncode == EXIT_INVALID, result.stderr
    assert result.stdout == ""  # no "order-...: started"
    assert "Traceback" not in result.stderr
    assert "connect" not in result.stderr.lower()
    assert elapsed < QUICK_SECONDS


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            item("sku", "CFQ7TTC0LH18"),
            "items.0.sku: must look like CFQ7TTC0LH18:0001 "
            "(12-character product id, ':' and 4-digit SKU id)",
        ),
        (
            tenant("domain_prefix", "contoso-mx"),
            "tenant.domain_prefix: must use letters and digits only",
        ),
        (p1m_annual, "items.0.billing_cycle: a P1M term can only be billed monthly"),
        (item("quantity", "10"), "items.0.quantity: must be a whole number between 1 and 10000"),
        (tenant("mode", "adopt"), "tenant.mode: must be 'create' or 'link'"),
        (
            lambda data: data.update(coupon="PROMO10"),
            "coupon: not a field of the order",
        ),
        (
            lambda data: data["customer"]["address"].update(postal_code="3100"),
            "customer.address.postal_code: a Mexican código postal has exactly 5 digits",
        ),
    ],
    ids=["sku", "prefix", "p1m-annual", "quantity-text", "mode", "extra-field", "postal-code"],
)
def test_bad_order_exits_2_naming_field_and_rule(
    tmp_path: Path, cli_env: dict[str, str], mutate: Mutation, expected: str
) -> None:
    path = order_file(tmp_path, mutate)

    started = time.monotonic()
    result = csp(cli_env, "order", "submit", str(path))

    assert_refused_before_starting(result, time.monotonic() - started)
    assert result.stderr.startswith("invalid order:")
    assert f"  - {expected}" in result.stderr


def test_every_problem_of_a_file_is_listed(tmp_path: Path, cli_env: dict[str, str]) -> None:
    def many(data: dict[str, Any]) -> None:
        data["order_id"] = "x"
        data["customer"]["address"]["country"] = "mx"
        data["items"][0]["unit_price"] = "129.005"

    started = time.monotonic()
    result = csp(cli_env, "order", "submit", str(order_file(tmp_path, many)))

    assert_refused_before_starting(result, time.monotonic() - started)
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [p.removeprefix("  - ").partition(":")[0] for p in problems] == [
        "order_id",
        "customer.address.country",
        "items.0.unit_price",
    ]


def test_invalid_json_exits_2_saying_where(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "order_id": "ABS-1",\n  "reseller": {,\n}\n', encoding="utf-8")

    started = time.monotonic()
    result = csp(cli_env, "order", "submit", str(path))

    assert_refused_before_starting(result, time.monotonic() - started)
    assert "order: not valid JSON" in result.stderr
    assert "line 3 column 16" in result.stderr


def test_one_bad_file_among_several_starts_none(
    tmp_path: Path, cli_env: dict[str, str], sentinel: socket.socket
) -> None:
    good = order_file(tmp_path, name="good.json")
    bad = order_file(tmp_path, tenant("domain_prefix", "contoso-mx"), name="bad.json")
    cli_env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{sentinel.getsockname()[1]}"

    started = time.monotonic()
    result = csp(cli_env, "order", "submit", str(good), str(bad))

    assert_refused_before_starting(result, time.monotonic() - started)
    assert f"{bad}: invalid order" in result.stderr
    assert "tenant.domain_prefix: must use letters and digits only" in result.stderr
    assert str(good) not in result.stderr
    sentinel.setblocking(False)
    with pytest.raises(BlockingIOError):  # nobody knocked: no connection was ever attempted
        sentinel.accept()


def test_missing_file_exits_2(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "nowhere" / "order.json"

    started = time.monotonic()
    result = csp(cli_env, "order", "submit", str(path))

    assert_refused_before_starting(result, time.monotonic() - started)
    assert f"cannot read {path}" in result.stderr
    assert "No such file or directory" in result.stderr


def test_a_valid_order_does_reach_for_temporal(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The control: with the same closed port, a valid order gets past validation and fails
    connecting. So the bad-input runs above really stopped before trying to connect."""
    result = csp(cli_env, "order", "submit", str(order_file(tmp_path)))

    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert f"cannot connect to Temporal at {cli_env['TEMPORAL_ADDRESS']}" in result.stderr
    assert "set TEMPORAL_ADDRESS" in result.stderr
    assert "Traceback" not in result.stderr
    assert "invalid order" not in result.stderr


@pytest.fixture
def sentinel() -> Iterator[socket.socket]:
    """A listening socket posing as Temporal: the kernel queues any TCP connection to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def test_bad_order_never_opens_a_connection(
    tmp_path: Path, cli_env: dict[str, str], sentinel: socket.socket
) -> None:
    cli_env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{sentinel.getsockname()[1]}"
    valid, bad = order_file(tmp_path), order_file(tmp_path, item("quantity", 0), "bad.json")

    result = csp(cli_env, "order", "submit", str(bad))

    assert result.returncode == EXIT_INVALID, result.stderr
    assert "items.0.quantity: must be a whole number between 1 and 10000" in result.stderr
    sentinel.setblocking(False)
    with pytest.raises(BlockingIOError):
        sentinel.accept()  # nobody knocked

    # The control: a valid order does knock (and then waits on a server that never answers).
    sentinel.settimeout(30)
    proc = subprocess.Popen(
        [sys.executable, "starter.py", "order", "submit", str(valid)],
        cwd=REPO,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connection, _ = sentinel.accept()
        connection.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_licenses_list_on_an_empty_registry(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = csp(cli_env, "licenses", "list")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no licenses"
    assert (tmp_path / "registry.db").exists()  # DATABASE_URL was honoured, not .data/


def test_licenses_list_json_on_an_empty_registry(cli_env: dict[str, str]) -> None:
    result = csp(cli_env, "licenses", "list", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_notices_list_shows_what_could_not_be_delivered(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    registry = Registry.from_url(cli_env["DATABASE_URL"])
    try:
        registry.begin_notification_attempt("order-ABS-1:active", "order_active", "a@b.mx", "ABS-1")
        registry.mark_notification_failed(
            "order-ABS-1:active", "550 mailbox unavailable", permanent=True
        )
        registry.begin_notification_attempt("order-ABS-2:active", "order_active", "c@d.mx", "ABS-2")
    finally:
        registry.dispose()

    result = csp(cli_env, "notices", "list")

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("undeliverable") and "order-ABS-1:active" in line and "550" in line
    pending = json.loads(csp(cli_env, "notices", "list", "--status", "pending", "--json").stdout)
    assert [row["key"] for row in pending] == ["order-ABS-2:active"]
    bad = csp(cli_env, "notices", "list", "--status", "lost")
    assert bad.returncode == 2 and "--status" in bad.stderr


def test_reveal_unknown_credentials_exits_4(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = csp(cli_env, "credentials", "reveal", "UNKNOWN")

    assert result.returncode == EXIT_NOT_FOUND, result.stderr
    assert result.stdout == ""
    assert "no credentials are stored for order UNKNOWN" in result.stderr
    assert "no order UNKNOWN is recorded (check the order id)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--period", "2026-13"], "billing period must be YYYY-MM (got '2026-13')"),
        (["--period", "2026-11", "--amount", "-5"], "--amount: must be a positive amount in MXN"),
        (["--period", "2026-11", "--amount", "mil"], "--amount: not a decimal amount: 'mil'"),
        (
            ["--period", "2026-11", "--paid-at", "ayer"],
            "--paid-at: not an ISO 8601 date and time: 'ayer'",
        ),
        (
            ["--period", "2026-11", "--paid-at", "2999-01-01T00:00"],
            "--paid-at: a payment cannot be in the future",
        ),
    ],
    ids=["period", "negative-amount", "amount-text", "paid-at-text", "paid-at-future"],
)
def test_bad_payment_exits_2_naming_the_option(
    tmp_path: Path, cli_env: dict[str, str], args: list[str], expected: str
) -> None:
    started = time.monotonic()
    result = csp(cli_env, "payment", "record", "sub-1", "--reference", "SPEI-1", *args)

    assert_refused_before_starting(result, time.monotonic() - started)
    assert expected in " ".join(result.stderr.split())
    assert not (tmp_path / "registry.db").exists()  # nothing was opened, let alone written


def test_renewals_status_lists_level_and_local_due_time(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from csp_core.registry import NewSubscription

    registry = Registry.from_url(cli_env["DATABASE_URL"])
    try:
        registry.record_order("ABS-1", "a" * 64, "RSL-042", "contosomx.onmicrosoft.com", "create")
        registry.record_tenant("contosomx.onmicrosoft.com", "tid", "Contoso", "RSL-042", "created")
        line = dict(product_name="M365 BB", term="P1Y", billing_cycle="monthly", quantity=10)
        registry.record_subscriptions(
            "ABS-1",
            "contosomx.onmicrosoft.com",
            [
                NewSubscription(
                    subscription_id=sub,
                    sku="CFQ7TTC0LH18:0001",
                    unit_price=Decimal("129.00"),
                    **line,
                )  # fmt: skip
                for sub in ("sub-1", "sub-2")
            ],
        )
        due = datetime(2026, 12, 26, 6, 0, tzinfo=UTC)  # 26 Dec 00:00 in Mexico City
        for sub in ("sub-1", "sub-2"):
            registry.upsert_charge(sub, "2026-12", Decimal("1290.00"), due)
        registry.set_charge_status("sub-1", "2026-12", "ESCALATED", 3)
        registry.record_payment("sub-1", "2026-12", "SPEI-A", Decimal("500"))  # partly paid
    finally:
        registry.dispose()

    result = csp(cli_env, "renewals", "status", "--status", "ESCALATED")

    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert "level" in header and "due MXN" in header and "America/Mexico_City" in header
    assert [row.split() for row in rows] == [
        ["2026-12", "sub-1", "1290.00", "790.00", "ESCALATED", "3", "2026-12-26", "00:00"]
    ]


def test_new_codec_key_is_usable_and_a_bad_one_is_named(cli_env: dict[str, str]) -> None:
    from temporalutil.codec import parse_key

    key = csp(cli_env, "codec", "new-key")
    assert key.returncode == 0, key.stderr
    assert len(parse_key(key.stdout.strip())) == 32

    cli_env["PAYLOAD_ENCRYPTION_KEYS"] = "c2hvcnQ="
    result = csp(cli_env, "order", "status", "ABS-1")

    assert result.returncode == EXIT_INVALID, result.stderr
    assert "PAYLOAD_ENCRYPTION_KEYS: each key must be 32 bytes (got 5)" in result.stderr
    assert "Traceback" not in result.stderr


# --- item 10: what people read; item 3: resubmits answered from the registry. Against the
# real time-skipping server (ts_env) where a workflow must be looked up.


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", [["order", "submit", "ORDER"], ["order", "status", "ABS-1"]])
def test_an_unreachable_temporal_is_named_in_one_line(
    tmp_path: Path, cli_env: dict[str, str], command: list[str]
) -> None:
    args = [str(order_file(tmp_path)) if arg == "ORDER" else arg for arg in command]

    result = csp(cli_env, *args)

    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"cannot connect to Temporal at {cli_env['TEMPORAL_ADDRESS']} ")
    assert "set TEMPORAL_ADDRESS" in line
    for internals in ("tonic", "transport", "Error(", "os error", "Failed client connect"):
        assert internals not in line


@pytest.fixture
def temporal_env(cli_env: dict[str, str], ts_env: WorkflowEnvironment) -> dict[str, str]:
    """cli_env, with Temporal at the real time-skipping test server."""
    return {**cli_env, "TEMPORAL_ADDRESS": ts_env.client.service_client.config.target_host}


@pytest.mark.parametrize(
    "command",
    [["status"], ["cancel", "--reason", "x"], ["accept"]],
    ids=["status", "cancel", "accept"],
)
async def test_an_unknown_order_exits_4(temporal_env: dict[str, str], command: list[str]) -> None:
    order_id = f"UNKNOWN-{uuid.uuid4().hex[:8]}"

    result = csp(temporal_env, "order", command[0], order_id, *command[1:])

    assert result.returncode == EXIT_NOT_FOUND, result.stderr
    assert one_line(result.stderr) == (
        f"order {order_id} not found: no workflow order-{order_id} in namespace default "
        "(check the order id)"
    )
    assert result.stdout == ""


def record_processed(
    env: dict[str, str], order_id: str, fingerprint: str, *, tenant_mode: str = "create"
) -> None:
    registry = Registry.from_url(env["DATABASE_URL"])
    try:
        registry.record_order(
            order_id, fingerprint, "RSL-042", "contosomx.onmicrosoft.com", tenant_mode
        )
        registry.set_order_stage(
            order_id, "ACTIVE", "10 licencias activas", provider_order_id="PO-7781"
        )
    finally:
        registry.dispose()


async def test_resubmitting_a_processed_order_answers_its_outcome_and_starts_nothing(
    tmp_path: Path, temporal_env: dict[str, str], ts_env: WorkflowEnvironment
) -> None:
    order_id = f"ABS-{uuid.uuid4().hex[:10]}"
    path = order_file(tmp_path, lambda data: data.update(order_id=order_id))
    # Submitted long ago, processed, and dropped by Temporal's retention since.
    record_processed(temporal_env, order_id, parse_order(path.read_bytes()).fingerprint())

    result = csp(temporal_env, "order", "submit", str(path))

    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"{order_id}: already processed: ACTIVE (provider order PO-7781)"
    )
    with pytest.raises(RPCError) as lookup:
        await ts_env.client.get_workflow_handle(f"order-{order_id}").describe()
    assert lookup.value.status == RPCStatusCode.NOT_FOUND

    # And ops can still read where it stands, and cannot cancel it.
    status = csp(temporal_env, "order", "status", order_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"order {order_id}: ACTIVE (from the registry)"
    assert "provider    order PO-7781" in status.stdout
    cancel = csp(temporal_env, "order", "cancel", order_id, "--reason", "x")
    assert cancel.returncode == EXIT_REFUSED, cancel.stderr
    assert f"order {order_id} is ACTIVE" in cancel.stderr
    assert "can no longer be cancelled here" in cancel.stderr


async def test_resubmitting_other_content_under_a_processed_id_exits_3(
    tmp_path: Path, temporal_env: dict[str, str], ts_env: WorkflowEnvironment
) -> None:
    order_id = f"ABS-{uuid.uuid4().hex[:10]}"
    record_processed(temporal_env, order_id, "0" * 64)
    path = order_file(tmp_path, lambda data: data.update(order_id=order_id))

    result = csp(temporal_env, "order", "submit", str(path))

    assert result.returncode == EXIT_REFUSED, result.stderr
    assert f"order {order_id} was already submitted with different content" in result.stderr
    assert "submit the change under a new order id" in result.stderr
    assert result.stdout == ""
    with pytest.raises(RPCError):
        await ts_env.client.get_workflow_handle(f"order-{order_id}").describe()


def test_revealing_credentials_of_a_linked_tenant_explains_there_are_none(
    cli_env: dict[str, str],
) -> None:
    registry = Registry.from_url(cli_env["DATABASE_URL"])
    try:
        registry.record_order("ABS-L1", "a" * 64, "RSL-077", "fabrikam.onmicrosoft.com", "link")
        # A create order that found the client's tenant already linked to us.
        registry.record_order("ABS-C1", "b" * 64, "RSL-042", "fabrikam.onmicrosoft.com", "create")
        registry.record_tenant("fabrikam.onmicrosoft.com", "tid-1", "Fabrikam", "RSL-077", "linked")
        registry.record_order("ABS-C2", "c" * 64, "RSL-042", "newco.onmicrosoft.com", "create")
    finally:
        registry.dispose()

    for order_id in ("ABS-L1", "ABS-C1"):
        result = csp(cli_env, "credentials", "reveal", order_id)

        assert result.returncode == EXIT_NOT_FOUND, result.stderr
        assert one_line(result.stderr) == (
            f"order {order_id} linked the client's existing tenant fabrikam.onmicrosoft.com: "
            "linked tenants have no generated credentials; the client's own administrator "
            "keeps signing in with their existing account"
        )
        assert "no credentials are stored" not in result.stderr

    pending = csp(cli_env, "credentials", "reveal", "ABS-C2")
    assert pending.returncode == EXIT_NOT_FOUND, pending.stderr
    assert (
        "order ABS-C2 has no credentials yet: its tenant newco.onmicrosoft.com has not been "
        "created (order stage RECEIVED)" in pending.stderr
    )
