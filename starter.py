"""The CLI for order systems and ops: `python starter.py --help` (installed as `csp`).

Input is validated before anything starts; exit codes: 0 ok (also: an order already processed,
answered from the registry), 2 invalid input, 3 refused, 4 not found, 5 Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from temporalio.service import RPCError, RPCStatusCode

from api import orders as order_api
from api import renewals as renewal_api
from csp_core.calendar import format_local
from csp_core.orders.models import OrderValidationError, TenantMode, parse_order
from csp_core.registry import (
    ChargeAlreadyPaid,
    CredentialsAlreadyRevealed,
    CredentialsNotFound,
    NotificationStatus,
    OrderRecord,
    Registry,
    TenantOrigin,
    UnknownCharge,
    UnknownSubscription,
)
from csp_core.renewals.billing import MAX_CHARGE_AMOUNT, open_period, parse_period
from csp_core.renewals.values import CycleResult
from csp_core.secrets import SecretVault
from csp_core.settings import Settings, get_settings
from csp_core.stages import PaymentStatus
from csp_core.timezones import zone
from temporalutil.client import TemporalUnreachable, connect
from temporalutil.codec import PayloadKeyError

app = typer.Typer(help="csp-orchestrator: Microsoft CSP orders and renewals.", no_args_is_help=True)
order_app = typer.Typer(help="Submit and steer license orders.", no_args_is_help=True)
licenses_app = typer.Typer(help="Licenses per tenant, from the registry.", no_args_is_help=True)
credentials_app = typer.Typer(help="Tenant admin credentials (shown once).", no_args_is_help=True)
app.add_typer(order_app, name="order")
app.add_typer(licenses_app, name="licenses")
app.add_typer(credentials_app, name="credentials")
notices_app = typer.Typer(help="E-mails sent, pending and undeliverable.", no_args_is_help=True)
app.add_typer(notices_app, name="notices")
renewals_app = typer.Typer(help="Monthly renewal payments.", no_args_is_help=True)
payment_app = typer.Typer(help="Record renewal payments.", no_args_is_help=True)
codec_app = typer.Typer(help="Payload encryption: keys and the codec server.", no_args_is_help=True)
app.add_typer(renewals_app, name="renewals")
app.add_typer(payment_app, name="payment")
app.add_typer(codec_app, name="codec")

EXIT_INVALID, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 2, 3, 4, 5
T = TypeVar("T")


def _unreachable(settings: Settings) -> str:
    # One line: the transport's internals (tonic/hyper errors) help nobody at a terminal.
    return (
        f"cannot connect to Temporal at {settings.temporal_address} "
        f"(namespace {settings.temporal_namespace}): is it running? "
        "Start it (make run) or set TEMPORAL_ADDRESS to its host:port"
    )


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except TemporalUnreachable as err:
        raise _fail(_unreachable(get_settings()), EXIT_UNAVAILABLE) from err
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise _fail(_unreachable(get_settings()), EXIT_UNAVAILABLE) from err
        raise
    except PayloadKeyError as err:
        raise _fail(str(err), EXIT_INVALID) from err
    finally:
        gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _registry() -> Registry:
    return Registry.from_url(get_settings().database_url)


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
        raise _fail("\n".join(problems), EXIT_INVALID)

    async def submit() -> list[order_api.SubmitResult | order_api.OrderRefused]:
        client = await connect(settings)
        outcomes: list[order_api.SubmitResult | order_api.OrderRefused] = []
        for order in orders:
            try:
                outcomes.append(await order_api.submit_order(client, registry, order, settings))
            except order_api.OrderRefused as err:
                outcomes.append(err)
        return outcomes

    registry = _registry()
    try:
        results = _run(submit())
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
        status = _run(query())
    except order_api.OrderNotFound as err:
        recorded = _recorded(order_id)
        if recorded is None:
            raise _fail(str(err), EXIT_NOT_FOUND) from err
        _echo_recorded(recorded, as_json)
        return
    except order_api.OrderRefused as err:
        raise _fail(str(err), EXIT_NOT_FOUND) from err
    if as_json:
        typer.echo(status.model_dump_json(indent=2))
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
        _run(accept())
    except order_api.OrderNotFound as err:
        raise _not_found_or_closed(order_id, err, "has nothing left to accept") from err
    except order_api.OrderRefused as err:
        raise _fail(str(err), EXIT_REFUSED) from err
    typer.echo(f"order {order_id}: partner acceptance recorded; activation continues")


@order_app.command("cancel")
def order_cancel(
    order_id: str, reason: Annotated[str, typer.Option(help="Why it is cancelled.")]
) -> None:
    """Cancel an order that has not been placed with the provider yet."""

    async def cancel() -> None:
        await order_api.cancel_order(await connect(get_settings()), order_id, reason)

    try:
        _run(cancel())
    except order_api.OrderNotFound as err:
        raise _not_found_or_closed(order_id, err, "can no longer be cancelled here") from err
    except order_api.OrderRefused as err:
        raise _fail(str(err), EXIT_REFUSED) from err
    typer.echo(f"order {order_id}: cancellation requested")


def _recorded(order_id: str) -> OrderRecord | None:
    registry = _registry()
    try:
        return registry.get_order(order_id)
    finally:
        registry.dispose()


def _echo_recorded(recorded: OrderRecord, as_json: bool) -> None:
    """An order whose workflow history is gone (retention), as the registry remembers it."""
    if as_json:
        typer.echo(recorded.model_dump_json(indent=2))
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
        return _fail(str(err), EXIT_NOT_FOUND)
    return _fail(
        f"order {order_id} is {recorded.stage.value} (recorded {recorded.updated_at:%Y-%m-%d}) "
        f"and {refusal}: its workflow has finished",
        EXIT_REFUSED,
    )


@licenses_app.command("list")
def licenses_list(
    domain: Annotated[str | None, typer.Option(help="Only this tenant domain.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Licenses per tenant domain."""
    registry = _registry()
    try:
        rows = registry.list_licenses(domain.lower() if domain else None)
    finally:
        registry.dispose()
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
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


@notices_app.command("list")
def notices_list(
    status: Annotated[
        str,
        typer.Option(
            help="undeliverable (refused or given up), pending (not delivered yet), sent, or all."
        ),
    ] = "undeliverable",
    order_id: Annotated[str | None, typer.Option("--order", help="Only this order.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """E-mails from the ledger: by default those that could not be delivered (ops follow up)."""
    wanted = None if status == "all" else status.upper()
    if wanted is not None and wanted not in NotificationStatus.__members__:
        raise _fail(
            f"--status: must be undeliverable, pending, sent or all (got {status!r})",
            EXIT_INVALID,
        )
    registry = _registry()
    try:
        rows = registry.list_notifications(
            None if wanted is None else NotificationStatus[wanted], order_id=order_id
        )
    finally:
        registry.dispose()
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        return
    if not rows:
        typer.echo(f"no {status} notices")
        return
    for row in rows:
        why = row.undeliverable_reason or row.last_error or ""
        typer.echo(
            f"{row.status.value:<13} {row.key:<52} {row.recipient:<32} attempts {row.attempts}"
            + (f"  {why}" if why else "")
        )


@credentials_app.command("reveal")
def credentials_reveal(order_id: str) -> None:
    """Show the admin credentials of a tenant created for ORDER_ID. Works once."""
    settings = get_settings()
    registry = _registry()
    try:
        username, password = registry.reveal_credentials(
            order_id, SecretVault.from_settings(settings)
        )
    except CredentialsNotFound as err:
        raise _fail(_why_no_credentials(registry, order_id, str(err)), EXIT_NOT_FOUND) from err
    except CredentialsAlreadyRevealed as err:
        raise _fail(str(err), EXIT_REFUSED) from err
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


def _period(value: str) -> str:
    try:
        parse_period(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    return value


@renewals_app.command("schedule")
def renewals_schedule() -> None:
    """Create or update the monthly renewal schedule (day 1, business time zone)."""
    settings = get_settings()

    async def ensure() -> str:
        return await renewal_api.ensure_schedule(await connect(settings), settings)

    outcome = _run(ensure())
    typer.echo(f"schedule {renewal_api.SCHEDULE_ID}: {outcome} ({settings.business_timezone})")


@renewals_app.command("run")
def renewals_run(
    period: Annotated[
        str | None,
        typer.Option(
            help="Billing period YYYY-MM. Default: the open one (this month until its cutoff, "
            "then the next).",
            callback=lambda v: v and _period(v),
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every renewal is started.")] = True,
) -> None:
    """Start (or join) the renewal cycle of one period. Safe to repeat."""
    settings = get_settings()
    policy = renewal_api.renewal_policy(settings)
    current = open_period(datetime.now(UTC), policy)
    chosen = period or current

    async def start() -> CycleResult | str:
        handle = await renewal_api.run_period(await connect(settings), chosen, settings)
        if not wait:
            return f"{handle.id}: started"
        return await renewal_api.cycle_result(handle)

    result = _run(start())
    if isinstance(result, str):
        typer.echo(result)
        return
    typer.echo(
        f"renewal-cycle-{chosen}: {result.charges_prepared or 0} charge(s) owed in {chosen}, "
        f"{result.renewals_started} renewal workflow(s) started"
    )
    if not result.charges_prepared:
        typer.echo(
            f"A subscription is first charged in the period it was activated in, or in the next "
            f"one when activated on or after day {policy.cutoff_day} 00:00 ({policy.timezone}); "
            "annual billing is charged in its renewal month."
        )
        if chosen != current:
            typer.echo(f"The open period is {current}: csp renewals run --period {current}")


@renewals_app.command("backfill")
def renewals_backfill(
    period: Annotated[str, typer.Option(help="Missed period YYYY-MM.", callback=_period)],
) -> None:
    """Run the monthly schedule for a period it missed."""
    settings = get_settings()

    async def backfill() -> None:
        await renewal_api.backfill(await connect(settings), period, settings)

    _run(backfill())
    typer.echo(f"schedule {renewal_api.SCHEDULE_ID}: backfill requested for {period}")


@renewals_app.command("status")
def renewals_status(
    period: Annotated[
        str | None, typer.Option(help="YYYY-MM.", callback=lambda v: v and _period(v))
    ] = None,
    status: Annotated[PaymentStatus | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Renewal charges with their status, escalation and due time."""
    registry = _registry()
    try:
        charges = registry.list_charges(period, status)
    finally:
        registry.dispose()
    if as_json:
        rows = [{**c.model_dump(mode="json"), "amount_due": str(c.amount_due)} for c in charges]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not charges:
        typer.echo("no renewal charges")
        return
    tz = zone(get_settings().business_timezone)
    typer.echo(
        f"{'period':<8} {'subscription':<38} {'amount MXN':>12} {'due MXN':>12} {'status':<12} "
        f"level due before ({tz.key})"
    )
    for c in charges:
        paid = f"  paid {format_local(c.paid_at, tz)} {c.payment_reference}" if c.paid_at else ""
        typer.echo(
            f"{c.period:<8} {c.subscription_id:<38} {c.amount:>12} {c.amount_due:>12} "
            f"{c.status.value:<12} {c.escalation_level:>5} "
            f"{format_local(c.due_at, tz)}{paid}"
        )


def _paid_at(value: str | None, timezone: str) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as err:
        raise _fail(
            f"--paid-at: not an ISO 8601 date and time: {value!r} (e.g. 2026-11-25T17:30)",
            EXIT_INVALID,
        ) from err
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone(timezone))
    if instant > datetime.now(UTC) + timedelta(minutes=5):
        raise _fail(f"--paid-at: a payment cannot be in the future (got {value})", EXIT_INVALID)
    return instant


@payment_app.command("record")
def payment_record(
    subscription_id: str,
    period: Annotated[str, typer.Option(help="Billing period YYYY-MM.", callback=_period)],
    reference: Annotated[str, typer.Option(help="Payment reference.")],
    amount: Annotated[
        str | None,
        typer.Option(
            help="Amount paid, MXN. Default: all that is still due. Less keeps the charge open "
            "(reminders go on) with the rest due."
        ),
    ] = None,
    paid_at: Annotated[
        str | None,
        typer.Option(
            help="When it was paid (ISO 8601; without an offset it is business local time). "
            "Default: now. Payments at or after day 26 00:00 are late."
        ),
    ] = None,
) -> None:
    """Record a renewal payment (idempotent) and stop its escalation."""
    from decimal import Decimal, InvalidOperation

    try:
        paid = Decimal(amount) if amount is not None else None
    except InvalidOperation as err:
        raise _fail(f"--amount: not a decimal amount: {amount!r}", EXIT_INVALID) from err
    if paid is not None and (not paid.is_finite() or not 0 < paid <= MAX_CHARGE_AMOUNT):
        raise _fail(
            f"--amount: must be a positive amount in MXN, at most {MAX_CHARGE_AMOUNT} "
            f"(got {amount})",
            EXIT_INVALID,
        )
    settings = get_settings()
    when = _paid_at(paid_at, settings.business_timezone)
    registry = _registry()

    async def record() -> renewal_api.PaymentResult:
        client = await connect(settings)
        return await renewal_api.record_payment(
            client, registry, subscription_id, period, reference, paid, when
        )

    try:
        result = _run(record())
    except (UnknownSubscription, UnknownCharge) as err:
        raise _fail(str(err), EXIT_NOT_FOUND) from err
    except ChargeAlreadyPaid as err:
        raise _fail(str(err), EXIT_REFUSED) from err
    finally:
        registry.dispose()
    state = "recorded" if result.newly_paid else "already recorded"
    charge = result.charge
    if result.settled:
        owed = "paid in full"
    else:
        owed = f"paid {charge.amount_paid} of {charge.amount} MXN, {charge.amount_due} still due"
    typer.echo(f"payment {reference} for {subscription_id} {period}: {state}; {owed}")


@codec_app.command("new-key")
def codec_new_key() -> None:
    """Print a new payload encryption key (put it first in PAYLOAD_ENCRYPTION_KEYS)."""
    from temporalutil.codec import generate_key

    typer.echo(generate_key())


@codec_app.command("serve")
def codec_serve(
    host: Annotated[str, typer.Option(help="Bind address (keep it local).")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: CODEC_SERVER_PORT.")] = None,
) -> None:
    """Serve /decode and /encode for the Web UI (--ui-codec-endpoint) and the temporal CLI."""
    import uvicorn

    from temporalutil.codec import codec_from_keys
    from temporalutil.codec_server import create_app

    settings = get_settings()
    try:
        codec = codec_from_keys([k.get_secret_value() for k in settings.payload_encryption_keys])
    except PayloadKeyError as err:
        raise _fail(str(err), EXIT_INVALID) from err
    token = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else None
    uvicorn.run(
        create_app(codec, settings.codec_cors_origins, token),
        host=host,
        port=port or settings.codec_server_port,
        log_level="warning",
    )


if __name__ == "__main__":
    app(prog_name="csp")
    sys.exit(0)
