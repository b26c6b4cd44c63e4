"""Monthly renewals and their payments: `csp renewals`, `csp payment`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from api import renewals as renewal_api
from cli.common import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_REFUSED, fail, open_registry, run
from csp_core.calendar import format_local
from csp_core.registry import (
    ChargeAlreadyPaid,
    SeatChangeRecord,
    UnknownCharge,
    UnknownSubscription,
)
from csp_core.renewals.billing import open_period, parse_period
from csp_core.renewals.values import CycleResult
from csp_core.settings import get_settings
from csp_core.stages import PaymentStatus
from csp_core.timezones import zone
from temporalutil.client import connect

renewals_app = typer.Typer(help="Monthly renewal payments.", no_args_is_help=True)
payment_app = typer.Typer(help="Record renewal payments.", no_args_is_help=True)


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

    outcome = run(ensure())
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

    result = run(start())
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

    run(backfill())
    typer.echo(f"schedule {renewal_api.SCHEDULE_ID}: backfill requested for {period}")


@renewals_app.command("status")
def renewals_status(
    period: Annotated[
        str | None, typer.Option(help="YYYY-MM.", callback=lambda v: v and _period(v))
    ] = None,
    status: Annotated[PaymentStatus | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Renewal charges with their status, escalation and due time, and the proration lines
    (seat changes, carried credits) each one bills."""
    registry = open_registry()
    try:
        charges = renewal_api.renewal_charges(registry, period, status)
    finally:
        registry.dispose()
    if as_json:
        typer.echo(json.dumps([renewal_api.charge_json(c, ls) for c, ls in charges], indent=2))
        return
    if not charges:
        typer.echo("no renewal charges")
        return
    tz = zone(get_settings().business_timezone)
    typer.echo(
        f"{'period':<8} {'subscription':<38} {'amount MXN':>12} {'due MXN':>12} {'status':<12} "
        f"level due before ({tz.key})"
    )
    for c, lines in charges:
        paid = f"  paid {format_local(c.paid_at, tz)} {c.payment_reference}" if c.paid_at else ""
        typer.echo(
            f"{c.period:<8} {c.subscription_id:<38} {c.amount:>12} {c.amount_due:>12} "
            f"{c.status.value:<12} {c.escalation_level:>5} "
            f"{format_local(c.due_at, tz)}{paid}"
        )
        for change in lines:
            typer.echo(f"{'':<9}{_seat_change_line(change, tz)}")


def _seat_change_line(change: SeatChangeRecord, tz: ZoneInfo) -> str:
    """A proration line billed by a charge, shown under it by `renewals status`."""
    if change.is_carry_over:
        return f"credit {change.proration_amount:+} carried over from {change.carried_from}"
    return (
        f"proration {change.proration_amount:+}: seats {change.seats_before} → "
        f"{change.seats_after} on {format_local(change.changed_at, tz)}, until "
        f"{format_local(change.prorated_until, tz)}, at {change.unit_price} each"
    )


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
    settings = get_settings()
    try:
        paid = renewal_api.parse_amount(amount)
        when = renewal_api.parse_paid_at(paid_at, settings.business_timezone)
    except renewal_api.PaymentInputError as err:
        raise fail(str(err), EXIT_INVALID) from err
    registry = open_registry()

    async def record() -> renewal_api.PaymentResult:
        client = await connect(settings)
        return await renewal_api.record_payment(
            client, registry, subscription_id, period, reference, paid, when
        )

    try:
        result = run(record())
    except (UnknownSubscription, UnknownCharge) as err:
        raise fail(str(err), EXIT_NOT_FOUND) from err
    except ChargeAlreadyPaid as err:
        raise fail(str(err), EXIT_REFUSED) from err
    finally:
        registry.dispose()
    state = "recorded" if result.newly_paid else "already recorded"
    charge = result.charge
    if result.settled:
        owed = "paid in full"
    else:
        owed = f"paid {charge.amount_paid} of {charge.amount} MXN, {charge.amount_due} still due"
    typer.echo(f"payment {reference} for {subscription_id} {period}: {state}; {owed}")
