"""`csp subscription ...` run as a subprocess the way ops run it, against the real stack: the
time-skipping test server with a worker running the real activities, the Partner Center sandbox
over HTTP, the SMTP sink and the registry (tests/support/stack.py)."""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from pathlib import Path

import pytest

from csp_core.calendar import format_local
from csp_core.timezones import BUSINESS_TZ
from tests.support.cli import csp, one_line, stack_env
from tests.support.stack import Stack, example

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXIT_INVALID, EXIT_REFUSED, EXIT_NOT_FOUND = 2, 3, 4
CONTOSO = "contosomx.onmicrosoft.com"


async def active_contoso(stack: Stack) -> tuple[str, str]:
    """The example create order run to ACTIVE: its license's subscription id and tenant id."""
    result = await stack.settle(await stack.submit(example("order-create.json")))
    assert result.stage.value == "ACTIVE"
    [license_] = stack.registry.list_licenses(CONTOSO)
    return license_.subscription_id, license_.tenant_id


async def test_show_then_seats_up_and_back_inside_the_window(stack: Stack) -> None:
    sub_id, tenant_id = await active_contoso(stack)
    env = stack_env(stack)

    shown = await csp(env, "subscription", "show", sub_id, "--json")
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert (details["status"], details["seats"], details["domain"]) == ("ACTIVE", 10, CONTOSO)
    text = await csp(env, "subscription", "show", sub_id)
    assert text.stdout.splitlines()[0] == f"subscription {sub_id}: ACTIVE"
    assert "  window      open until " in text.stdout
    assert "Microsoft 365 Business Basic (CFQ7TTC0LH18:0001)" in text.stdout

    up = await csp(env, "subscription", "seats", sub_id, "--quantity", "15")
    assert up.returncode == 0, up.stderr
    first, headline, *_ = up.stdout.splitlines()
    assert first.startswith("request id ") and "--request-id" in first
    generated = first.split()[2]
    assert headline == f"subscription {sub_id}: 15 seat(s)"
    down = await csp(env, "subscription", "seats", sub_id, "--quantity", "10", "--request-id", "r2")
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[0] == f"subscription {sub_id}: 10 seat(s)"
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 10
    assert stack.stats()["quantity_changes"] == 2

    # The same request ids again: answered as the first time, nothing asked of the provider.
    again = await csp(
        env, "subscription", "seats", sub_id, "--quantity", "15", "--request-id", generated
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"subscription {sub_id}: 15 seat(s)"
    as_json = await csp(
        env, "subscription", "seats", sub_id, "--quantity", "10", "--request-id", "r2", "--json"
    )
    assert json.loads(as_json.stdout) | {"seats": 10, "request_id": "r2"} == json.loads(
        as_json.stdout
    )
    assert stack.stats()["quantity_changes"] == 2
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 10

    added = await csp(env, "subscription", "seats", sub_id, "--add", "2", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["seats"] == 12
    assert "request id" in added.stderr  # generated: told on stderr, JSON alone on stdout


async def test_a_transfer_exits_3_with_the_rule_and_the_way_out(stack: Stack) -> None:
    sub_id, _ = await active_contoso(stack)
    env = stack_env(stack)

    result = await csp(
        env, "subscription", "transfer", sub_id, "--to-domain", "fabrikam.onmicrosoft.com"
    )

    assert result.returncode == EXIT_REFUSED, result.stderr
    reason = one_line(result.stderr)
    assert "a license never leaves its tenant" in reason
    assert "csp order submit" in reason and "fabrikam.onmicrosoft.com" in reason
    assert "Traceback" not in result.stderr


async def test_auto_renew_off_then_cancel_inside_the_window_and_nothing_more(stack: Stack) -> None:
    sub_id, tenant_id = await active_contoso(stack)
    env = stack_env(stack)

    off = await csp(env, "subscription", "auto-renew", sub_id, "--off", "--request-id", "off-1")
    assert off.returncode == 0, off.stderr
    assert off.stdout.splitlines()[0] == f"subscription {sub_id}: auto-renew off"
    cancelled = await csp(env, "subscription", "cancel", sub_id, "--request-id", "cancel-1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "  status      CANCELLED" in cancelled.stdout
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).status.value == "deleted"

    shown = await csp(env, "subscription", "show", sub_id, "--json")
    assert json.loads(shown.stdout)["status"] == "CANCELLED"
    refused = await csp(env, "subscription", "seats", sub_id, "--add", "1")
    assert refused.returncode == EXIT_REFUSED, refused.stderr
    assert f"subscription {sub_id} is CANCELLED" in refused.stderr
    assert "csp order submit" in refused.stderr
    assert stack.stats()["subscriptions_cancelled"] == 1


async def test_outside_the_window_removing_a_seat_exits_3_naming_its_end(stack: Stack) -> None:
    sub_id, tenant_id = await active_contoso(stack)
    env = stack_env(stack)
    shown = json.loads((await csp(env, "subscription", "show", sub_id, "--json")).stdout)
    end = datetime.fromisoformat(shown["cancellable_until"])
    await stack.env.sleep(end - await stack.env.get_current_time())  # 168 h after the purchase

    result = await csp(env, "subscription", "seats", sub_id, "--quantity", "9")

    assert result.returncode == EXIT_REFUSED, result.stderr
    assert format_local(end, BUSINESS_TZ) in result.stderr and "Mexico City" in result.stderr
    assert "auto-renew off" in result.stderr
    assert (await stack.provider.get_subscription(tenant_id, sub_id)).quantity == 10


async def test_an_unknown_subscription_exits_4_and_says_how_to_adopt(stack: Stack) -> None:
    env = stack_env(stack)

    for command in (["show"], ["cancel"], ["seats", "--add", "1"]):
        result = await csp(env, "subscription", command[0], "no-such-sub", *command[1:])

        assert result.returncode == EXIT_NOT_FOUND, result.stderr
        assert one_line(result.stderr).startswith(
            "subscription no-such-sub not found: no workflow subscription-no-such-sub"
        )
        assert "csp subscriptions adopt" in result.stderr


@pytest.fixture
def closed_env(tmp_path: Path) -> dict[str, str]:
    """Temporal at a port nobody listens on: a command that tried to connect would exit 5."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_"))}
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'registry.db'}",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["show", "a b"], "SUBSCRIPTION_ID: must be the provider's subscription id"),
        (["seats", "sub-1"], "give exactly one of --quantity (the total) or --add"),
        (["seats", "sub-1", "--quantity", "3", "--add", "1"], "give exactly one of --quantity"),
        (["seats", "sub-1", "--add", "0"], "--add: seats to add, a whole number of at least 1"),
        (["seats", "sub-1", "--quantity", "tres"], "Invalid value for '--quantity'"),
        (["cancel", "sub-1", "--request-id", "a b"], "--request-id: must be 1-200 letters"),
        (["auto-renew", "sub-1"], "give --on (renew at the term's end) or --off"),
        (
            ["transfer", "sub-1", "--to-domain", "fabrikam.com"],
            "--to-domain: must be the tenant's initial <prefix>.onmicrosoft.com domain",
        ),
    ],
    ids=["id", "no-seats", "both-seats", "add-0", "quantity-text", "request-id", "on-off", "to"],
)
async def test_bad_input_exits_2_naming_the_option_before_connecting(
    closed_env: dict[str, str], args: list[str], expected: str
) -> None:
    result = await csp(closed_env, "subscription", *args)

    assert result.returncode == EXIT_INVALID, result.stderr
    assert expected in " ".join(result.stderr.replace("│", " ").split())
    assert "cannot connect" not in result.stderr and "Traceback" not in result.stderr
