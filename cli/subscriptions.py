"""Subscriptions after purchase: `csp subscription` (one license: show and change it) and
`csp subscriptions` (the list from visibility, adoption of what the provider already has).

Each change is an Update of the subscription's workflow, idempotent by `--request-id`; without
one, a request id is made up and printed so the caller can repeat the command and get the same
answer. Exit codes as for orders: 2 bad input (the option and the rule), 3 refused (the reason
and the way out), 4 unknown subscription.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from temporalio.client import Client

from api import subscriptions as subscription_api
from api.subscriptions import SubscriptionInputError, SubscriptionNotFound, SubscriptionRefused
from cli.common import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    echo_json,
    fail,
    open_registry,
    run,
)
from csp_core.calendar import format_local
from csp_core.settings import get_settings
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.adoption import AdoptionReport, unknown_tenant
from csp_core.subscriptions.values import SubscriptionDetails
from csp_core.timezones import zone
from temporalutil.client import connect

subscription_app = typer.Typer(
    help="One subscription: show it, change its seats, cancel it, auto-renew, transfer.",
    no_args_is_help=True,
)
subscriptions_app = typer.Typer(
    help="Subscriptions by tenant, reseller or status; adopt what the provider already has.",
    no_args_is_help=True,
)
T = TypeVar("T")
V = TypeVar("V")

SubscriptionId = Annotated[str, typer.Argument(help="The provider's subscription id.")]
RequestId = Annotated[
    str | None,
    typer.Option(
        help="Your id for this change (the Update id): the same id again is answered as the "
        "first time. Default: a new one, printed."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def checked(check: Callable[[V], T], value: V) -> T:
    """Input rules first: a bad value exits 2 naming the option, before anything is asked."""
    try:
        return check(value)
    except SubscriptionInputError as err:
        raise fail(str(err), EXIT_INVALID) from err


# ------------------------------------------------------------------ csp subscription
@subscription_app.command("show")
def subscription_show(subscription_id: SubscriptionId, as_json: AsJson = False) -> None:
    """Where a subscription stands (asks its workflow)."""
    sid = checked(subscription_api.check_subscription_id, subscription_id)

    async def query() -> SubscriptionDetails:
        return await subscription_api.subscription_details(await connect(get_settings()), sid)

    try:
        details = run(query())
    except SubscriptionNotFound as err:
        raise not_found(sid, err) from err
    except SubscriptionRefused as err:
        raise fail(str(err), EXIT_NOT_FOUND) from err
    if as_json:
        echo_json(details)
        return
    echo_details(details)


@subscription_app.command("seats")
def subscription_seats(
    subscription_id: SubscriptionId,
    quantity: Annotated[
        int | None,
        typer.Option(
            help="The total seats wanted. Fewer only within 168 h of the purchase or the "
            "renewal; never below one."
        ),
    ] = None,
    add: Annotated[int | None, typer.Option(help="Seats to add (any time while active).")] = None,
    request_id: RequestId = None,
    as_json: AsJson = False,
) -> None:
    """Set the seats (--quantity N) or add some (--add N)."""
    if (quantity is None) == (add is None):
        raise fail(
            "give exactly one of --quantity (the total) or --add (seats to add)", EXIT_INVALID
        )
    if add is not None:
        checked(subscription_api.check_seats_to_add, add)
    if add is not None:
        change(
            subscription_id,
            request_id,
            as_json,
            lambda client, sid, rid: subscription_api.add_seats(client, sid, add, rid),
            lambda details: f"{add} seat(s) added, {details.seats} now",
        )
        return
    assert quantity is not None
    change(
        subscription_id,
        request_id,
        as_json,
        lambda client, sid, rid: subscription_api.set_seats(client, sid, quantity, rid),
        lambda details: f"{details.seats} seat(s)",
    )


@subscription_app.command("cancel")
def subscription_cancel(
    subscription_id: SubscriptionId, request_id: RequestId = None, as_json: AsJson = False
) -> None:
    """Cancel the subscription (only within 168 h of the purchase or the renewal)."""
    change(
        subscription_id,
        request_id,
        as_json,
        subscription_api.cancel,
        lambda details: "cancelled at the provider; the reseller is told",
    )


@subscription_app.command("auto-renew")
def subscription_auto_renew(
    subscription_id: SubscriptionId,
    enabled: Annotated[
        bool | None,
        typer.Option(
            "--on/--off", help="Renew at the term's end (--on), or let it expire (--off)."
        ),
    ] = None,
    request_id: RequestId = None,
    as_json: AsJson = False,
) -> None:
    """Turn auto-renew on or off."""
    if enabled is None:
        raise fail(
            "give --on (renew at the term's end) or --off (let it expire then)", EXIT_INVALID
        )
    change(
        subscription_id,
        request_id,
        as_json,
        lambda client, sid, rid: subscription_api.set_auto_renew(client, sid, enabled, rid),
        lambda details: f"auto-renew {'on' if details.auto_renew else 'off'}",
    )


@subscription_app.command("transfer")
def subscription_transfer(
    subscription_id: SubscriptionId,
    to_domain: Annotated[str, typer.Option(help="The other tenant, <prefix>.onmicrosoft.com.")],
    request_id: RequestId = None,
    as_json: AsJson = False,
) -> None:
    """Move the license to another tenant: always refused, with the way out."""
    target = checked(lambda v: subscription_api.check_domain(v, "--to-domain"), to_domain)
    change(
        subscription_id,
        request_id,
        as_json,
        lambda client, sid, rid: subscription_api.transfer(client, sid, target, rid),
        lambda details: f"moved to {target}",
    )


def change(
    subscription_id: str,
    request_id: str | None,
    as_json: bool,
    call: Callable[[Client, str, str], Awaitable[SubscriptionDetails]],
    done: Callable[[SubscriptionDetails], str],
) -> None:
    """Ask the workflow for one change and print its answer (or its refusal, exit 3)."""
    sid = checked(subscription_api.check_subscription_id, subscription_id)
    if request_id is None:
        rid = subscription_api.new_request_id()
        # Printed before asking, so a caller cut off (Temporal unreachable) can repeat it.
        typer.echo(
            f"request id {rid} (repeat with --request-id {rid} to get the same answer)",
            err=as_json,
        )
    else:
        rid = checked(subscription_api.check_request_id, request_id)

    async def ask() -> SubscriptionDetails:
        return await call(await connect(get_settings()), sid, rid)

    try:
        details = run(ask())
    except SubscriptionNotFound as err:
        raise not_found(sid, err) from err
    except SubscriptionRefused as err:
        raise fail(str(err), EXIT_REFUSED) from err
    if as_json:
        typer.echo(json.dumps({"request_id": rid, **details.model_dump(mode="json")}, indent=2))
        return
    pending = next((t for t in details.ops_tasks if t.change_id == rid), None)
    if pending is not None:
        # The provider has no API for it: asked of ops, not made until they confirm it.
        echo_details(details, f"NOT DONE YET, pending with ops (task {pending.task_id})")
        return
    echo_details(details, done(details))


def not_found(subscription_id: str, err: SubscriptionNotFound) -> typer.Exit:
    """Not found (4); when the registry holds it, say that it only needs adopting."""
    registry = open_registry()
    try:
        recorded = registry.get_subscription(subscription_id)
    finally:
        registry.dispose()
    if recorded is None:
        return fail(str(err), EXIT_NOT_FOUND)
    return fail(
        f"subscription {subscription_id} is recorded on {recorded.tenant_domain} "
        f"({recorded.status.value}) but no workflow manages it yet: bring it in with "
        f"`csp subscriptions adopt --domain {recorded.tenant_domain}`",
        EXIT_NOT_FOUND,
    )


def echo_details(details: SubscriptionDetails, headline: str | None = None) -> None:
    """The subscription for people: a headline (its status, or what a change did), then its
    seats, term and 168 h window in the business time zone."""
    tz = zone(get_settings().business_timezone)
    typer.echo(f"subscription {details.subscription_id}: {headline or details.status.value}")
    if headline is not None:
        typer.echo(f"  status      {details.status.value}")
    typer.echo(f"  product     {details.product_name} ({details.sku})")
    typer.echo(f"  tenant      {details.domain} (reseller {details.reseller_id})")
    typer.echo(
        f"  seats       {details.seats} × {details.unit_price} MXN, {details.term.value} billed "
        f"{details.billing_cycle.value}"
    )
    typer.echo(f"  auto-renew  {'on' if details.auto_renew else 'off'}")
    # The term is over at the anniversary (it renews or expires then); the provider dates its
    # last day (commitmentEndDate) as that day's 00:00 UTC, which is the evening before locally.
    ends = details.term_end_instant or details.term_ends_at
    renews = "renews" if details.auto_renew else "expires"
    typer.echo(
        f"  term        {format_local(details.term_started_at, tz)} → "
        f"{format_local(ends, tz, tz.key)} ({renews} then)"
    )
    until = format_local(details.cancellable_until, tz, tz.key)
    if details.status.is_final:
        pass
    elif datetime.now(UTC) < details.cancellable_until:
        typer.echo(
            f"  window      open until {until}: seats can be removed, or it can be cancelled"
        )
    else:
        typer.echo(
            f"  window      closed at {until}: seats can only be added; turn auto-renew off "
            "to end it at the term's end"
        )
    if details.cancelled_at is not None:
        typer.echo(f"  cancelled   {format_local(details.cancelled_at, tz, tz.key)}")
    for task in details.ops_tasks:
        due = format_local(task.deadline, tz, tz.key)
        typer.echo(f"  pending     {task.instruction()}: asked of ops (task {task.task_id})")
        typer.echo(f"              due by {due}; nothing changes until ops confirm it")


# ------------------------------------------------------------------ csp subscriptions
@subscriptions_app.command("list")
def subscriptions_list(
    domain: Annotated[str | None, typer.Option(help="Only this tenant domain.")] = None,
    reseller: Annotated[str | None, typer.Option(help="Only this reseller id.")] = None,
    status: Annotated[
        SubscriptionStatus | None, typer.Option(case_sensitive=False, help="Only this status.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Subscriptions from Temporal visibility (their workflows' search attributes)."""
    wanted_domain = checked(subscription_api.check_domain, domain) if domain else None
    wanted_reseller = checked(subscription_api.check_reseller_id, reseller) if reseller else None

    async def listed() -> list[subscription_api.SubscriptionRow]:
        return await subscription_api.list_subscriptions(
            await connect(get_settings()),
            domain=wanted_domain,
            reseller_id=wanted_reseller,
            status=status,
        )

    rows = run(listed())
    if as_json:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no subscriptions" + (f" on {wanted_domain}" if wanted_domain else ""))
        return
    tz = zone(get_settings().business_timezone)
    typer.echo(f"(times in {tz.key}; term ends: the provider's last day of the term)")
    typer.echo(
        f"{'domain':<32} {'subscription':<38} {'status':<10} {'seats':>5} {'auto':<4} "
        f"{'cancellable until':<17} {'term ends':<10} reseller"
    )
    for row in rows:
        until = format_local(row.cancellable_until, tz) if row.cancellable_until else "-"
        auto = "-" if row.auto_renew is None else ("on" if row.auto_renew else "off")
        typer.echo(
            f"{row.domain or '-':<32} {row.subscription_id:<38} {row.status or '-':<10} "
            f"{row.seats if row.seats is not None else '-':>5} {auto:<4} {until:<17} "
            f"{row.term_ends_on or '-':<10} {row.reseller_id or '-'}"
        )


@subscriptions_app.command("adopt")
def subscriptions_adopt(
    domain: Annotated[
        str | None,
        typer.Option(help="Only this tenant. Default: every tenant the registry knows."),
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(
            help="PRODUCT:SKU=MXN: the unit price of a SKU this system never sold (repeatable); "
            "otherwise the price it was last sold at is used."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Bring the provider's subscriptions on our tenants (bought before this system, or
    activated before this release) under a workflow each, with their real purchase dates.
    Safe to repeat: what is already managed is left alone."""
    wanted = checked(subscription_api.check_domain, domain) if domain else None
    prices = dict(checked(subscription_api.parse_price, p) for p in price or [])
    settings = get_settings()
    registry = open_registry()
    try:
        if wanted is not None and registry.get_tenant(wanted) is None:
            raise fail(unknown_tenant(wanted), EXIT_REFUSED)

        async def adopt() -> list[AdoptionReport | SubscriptionRefused]:
            client = await connect(settings)
            if wanted is None:
                return await subscription_api.adopt_all(client, registry, settings, prices)
            try:
                return [await subscription_api.adopt(client, registry, wanted, settings, prices)]
            except SubscriptionRefused as err:
                return [err]

        outcomes = run(adopt())
    finally:
        registry.dispose()
    reports = [o for o in outcomes if isinstance(o, AdoptionReport)]
    refusals = [o for o in outcomes if isinstance(o, SubscriptionRefused)]
    if as_json:
        echo_json(reports)
    elif not outcomes:
        typer.echo("no tenants in the registry: nothing to adopt")
    else:
        for report in reports:
            echo_report(report)
    for refusal in refusals:
        typer.secho(str(refusal), fg=typer.colors.RED, err=True)
    if refusals:
        raise typer.Exit(EXIT_REFUSED)


def echo_report(report: AdoptionReport) -> None:
    tz = zone(get_settings().business_timezone)
    now = datetime.now(UTC)
    typer.echo(report.summary())
    for sub in report.adopted:
        window = "open until" if now < sub.cancellable_until else "closed at"
        typer.echo(
            f"  adopted  {sub.subscription_id}  {sub.product_name} × {sub.seats}, bought "
            f"{format_local(sub.purchased_at, tz)}, window {window} "
            f"{format_local(sub.cancellable_until, tz, tz.key)}; {sub.unit_price} MXN per seat "
            f"{sub.price_source}"
        )
    for subscription_id in report.already_managed:
        typer.echo(f"  managed  {subscription_id}")
    for skipped in report.skipped:
        typer.echo(f"  skipped  {skipped.subscription_id}: {skipped.reason}")
