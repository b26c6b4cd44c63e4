"""Orders and what they leave behind: `csp order`, `csp licenses`, `csp credentials`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from api import orders as order_api
from cli.common import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    echo_json,
    fail,
    open_registry,
    run,
)
from csp_core.orders.models import OrderValidationError, TenantMode, parse_order
from csp_core.registry import (
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    OrderRecord,
    Registry,
    TenantOrigin,
)
from csp_core.secrets import SecretVault
from csp_core.settings import get_settings
from temporalutil.client import connect

order_app = typer.Typer(help="Submit and steer license orders.", no_args_is_help=True)
licenses_app = typer.Typer(help="Licenses per tenant, from the registry.", no_args_is_help=True)
credentials_app = typer.Typer(help="Tenant admin credentials (shown once).", no_args_is_help=True)


@order_app.command("submit")
def order_submit(
    files: Annotated[list[Path], typer.Argument(help="Order JSON file(s).")],
) -> None:
    """Validate orders and start their workflows (idempotent). Every file is validated before
    any order is started: one bad file starts nothing."""
    settings = get_settings()
    orders, problems = [], []
    for file in files:
        try:
            orders.append(parse_order(file.read_bytes(), settings.order_countries))
        except OSError as err:
            problems.append(f"cannot read {file}: {err.strerror}")
        except OrderValidationError as err:
            problems.append(f"{file}: {err}" if len(files) > 1 else str(err))
    if problems:
        raise fail("\n".join(problems), EXIT_INVALID)

    async def submit() -> list[order_api.SubmitResult | order_api.OrderRefused]:
        client = await connect(settings)
        outcomes: list[order_api.SubmitResult | order_api.OrderRefused] = []
        for order in orders:
            try:
                outcomes.append(await order_api.submit_order(client, registry, order, settings))
            except order_api.OrderRefused as err:
                outcomes.append(err)
        return outcomes

    registry = open_registry()
    try:
        results = run(submit())
    finally:
        registry.dispose()
    refused = False
    for outcome in results:
        if isinstance(outcome, order_api.OrderRefused):
            typer.secho(str(outcome), fg=typer.colors.RED, err=True)
            refused = True
            continue
        typer.echo(outcome.describe())
    if refused:
        raise typer.Exit(EXIT_REFUSED)


@order_app.command("status")
def order_status(order_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show where an order stands (asks the workflow)."""

    async def query() -> Any:
        return await order_api.order_status(await connect(get_settings()), order_id)

    try:
        status = run(query())
    except order_api.OrderNotFound as err:
        recorded = _recorded(order_id)
        if recorded is None:
            raise fail(str(err), EXIT_NOT_FOUND) from err
        _echo_recorded(recorded, as_json)
        return
    except order_api.OrderRefused as err:
        raise fail(str(err), EXIT_NOT_FOUND) from err
    if as_json:
        echo_json(status)
        return
    typer.echo(f"order {status.order_id}: {status.stage.value}")
    typer.echo(
        f"  tenant      {status.domain}" + (f" ({status.tenant_id})" if status.tenant_id else "")
    )
    if status.acceptance_deadline:
        typer.echo(f"  reminders   {status.reminders_sent}")
        typer.echo(f"  expires     {status.acceptance_deadline.isoformat()}")
    if status.provider_order_id:
        typer.echo(
            f"  provider    order {status.provider_order_id}, "
            f"{len(status.subscription_ids)} subscription(s)"
        )
    typer.echo(f"  detail      {status.detail}")
    if status.cancel_refused:
        typer.echo(f"  note        {status.cancel_refused}")


@order_app.command("accept")
def order_accept(
    order_id: str, note: Annotated[str | None, typer.Option(help="Who confirmed it.")] = None
) -> None:
    """Record that the client accepted us and the distributor as partners."""

    async def accept() -> None:
        await order_api.accept_partner(await connect(get_settings()), order_id, note)

    try:
        run(accept())
    except order_api.OrderNotFound as err:
        raise _not_found_or_closed(order_id, err, "has nothing left to accept") from err
    except order_api.OrderRefused as err:
        raise fail(str(err), EXIT_REFUSED) from err
    typer.echo(f"order {order_id}: partner acceptance recorded; activation continues")


@order_app.command("cancel")
def order_cancel(
    order_id: str, reason: Annotated[str, typer.Option(help="Why it is cancelled.")]
) -> None:
    """Cancel an order that has not been placed with the provider yet."""

    async def cancel() -> None:
        await order_api.cancel_order(await connect(get_settings()), order_id, reason)

    try:
        run(cancel())
    except order_api.OrderNotFound as err:
        raise _not_found_or_closed(order_id, err, "can no longer be cancelled here") from err
    except order_api.OrderRefused as err:
        raise fail(str(err), EXIT_REFUSED) from err
    typer.echo(f"order {order_id}: cancellation requested")


def _recorded(order_id: str) -> OrderRecord | None:
    registry = open_registry()
    try:
        return registry.get_order(order_id)
    finally:
        registry.dispose()


def _echo_recorded(recorded: OrderRecord, as_json: bool) -> None:
    """An order whose workflow history is gone (retention), as the registry remembers it."""
    if as_json:
        echo_json(recorded)
        return
    typer.echo(f"order {recorded.order_id}: {recorded.stage.value} (from the registry)")
    typer.echo(f"  tenant      {recorded.domain} ({recorded.tenant_mode.value})")
    if recorded.provider_order_id:
        typer.echo(f"  provider    order {recorded.provider_order_id}")
    if recorded.stage_detail:
        typer.echo(f"  detail      {recorded.stage_detail}")
    typer.echo(f"  updated     {recorded.updated_at.isoformat()}")


def _not_found_or_closed(order_id: str, err: order_api.OrderNotFound, refusal: str) -> typer.Exit:
    """Not found (4), unless the registry remembers an order whose workflow is gone (3)."""
    recorded = _recorded(order_id)
    if recorded is None:
        return fail(str(err), EXIT_NOT_FOUND)
    return fail(order_api.closed_refusal(recorded, refusal), EXIT_REFUSED)


@licenses_app.command("list")
def licenses_list(
    domain: Annotated[str | None, typer.Option(help="Only this tenant domain.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Licenses per tenant domain."""
    registry = open_registry()
    try:
        rows = registry.list_licenses(domain.lower() if domain else None)
    finally:
        registry.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no licenses" + (f" on {domain}" if domain else ""))
        return
    current = None
    for row in rows:
        if row.domain != current:
            current = row.domain
            typer.echo(f"{row.domain}  (tenant {row.tenant_id}, reseller {row.reseller_id})")
        typer.echo(
            f"  {row.sku:<20} {row.quantity:>5} × {row.product_name:<40} "
            f"{row.term}/{row.billing_cycle:<8} {row.status:<10} {row.subscription_id}"
        )


@credentials_app.command("reveal")
def credentials_reveal(order_id: str) -> None:
    """Show the admin credentials of a tenant created for ORDER_ID. Works once."""
    settings = get_settings()
    registry = open_registry()
    try:
        username, password = registry.reveal_credentials(
            order_id, SecretVault.from_settings(settings)
        )
    except CredentialsNotFound as err:
        raise fail(_why_no_credentials(registry, order_id, str(err)), EXIT_NOT_FOUND) from err
    except CredentialsAlreadyRevealed as err:
        raise fail(str(err), EXIT_REFUSED) from err
    finally:
        registry.dispose()
    typer.echo(f"user:     {username}")
    typer.echo(f"password: {password.get_secret_value()}")
    typer.echo("Shown once: give it to the client's administrator now; it will not be shown again.")


def _why_no_credentials(registry: Registry, order_id: str, not_stored: str) -> str:
    """Only a tenant we created has generated credentials; say which case this order is."""
    order = registry.get_order(order_id)
    if order is None:
        return f"{not_stored}: no order {order_id} is recorded (check the order id)"
    tenant = registry.get_tenant(order.domain)
    if order.tenant_mode is TenantMode.LINK or (
        tenant is not None and tenant.origin is TenantOrigin.LINKED
    ):
        return (
            f"order {order_id} linked the client's existing tenant {order.domain}: linked "
            "tenants have no generated credentials; the client's own administrator keeps "
            "signing in with their existing account"
        )
    if tenant is not None:
        return (
            f"order {order_id} used tenant {order.domain}, which an earlier order created: "
            "its admin credentials belong to that order (csp credentials reveal <that order>)"
        )
    return (
        f"order {order_id} has no credentials yet: its tenant {order.domain} has not been "
        f"created (order stage {order.stage.value})"
    )
