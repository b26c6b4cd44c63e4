"""HTTP API keys: `csp apikey create|list|revoke`.

A key is printed once, alone on stdout (so `KEY=$(csp apikey create --reseller RSL-042)`
works), and only its digest is stored: a lost key is revoked and replaced, never shown again.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.subscriptions import SubscriptionInputError, check_reseller_id
from cli.common import EXIT_INVALID, EXIT_NOT_FOUND, echo_json, fail, open_registry
from csp_core.registry import ApiKeyScope, UnknownApiKey, is_key_id
from csp_core.settings import get_settings

apikey_app = typer.Typer(
    help="HTTP API keys: one per caller (a reseller's system, or ops).", no_args_is_help=True
)


@apikey_app.command("create")
def apikey_create(
    reseller: Annotated[
        str | None,
        typer.Option(help="The reseller id the key acts for: it sees that reseller's only."),
    ] = None,
    ops: Annotated[bool, typer.Option("--ops", help="An ops key: it sees everything.")] = False,
    label: Annotated[
        str | None, typer.Option(help="Who holds it, e.g. 'ERP Integradora Norte'.")
    ] = None,
    rate_per_minute: Annotated[
        int | None,
        typer.Option(help="Requests per minute. Default: API_RATE_LIMIT_PER_MINUTE."),
    ] = None,
) -> None:
    """Make a key and print it once (stdout); what it is for goes to stderr."""
    if (reseller is None) == (not ops):
        raise fail("give exactly one of --reseller RESELLER_ID or --ops", EXIT_INVALID)
    if reseller is not None:
        try:
            reseller = check_reseller_id(reseller)
        except SubscriptionInputError as err:
            raise fail(str(err), EXIT_INVALID) from err
    if rate_per_minute is not None and rate_per_minute < 1:
        raise fail(
            f"--rate-per-minute: a whole number of at least 1 (got {rate_per_minute})",
            EXIT_INVALID,
        )
    if label is not None and not 1 <= len(label.strip()) <= 200:
        raise fail("--label: text of 1-200 characters", EXIT_INVALID)
    registry = open_registry()
    try:
        made = registry.create_api_key(
            ApiKeyScope.OPS if ops else ApiKeyScope.RESELLER,
            reseller,
            label.strip() if label else None,
            rate_per_minute,
        )
    finally:
        registry.dispose()
    record = made.record
    rate = record.rate_per_minute or get_settings().api_rate_limit_per_minute
    typer.echo(made.key.get_secret_value())
    typer.echo(
        f"API key {record.key_id} for {record.caller} ({rate} requests/min). Shown once: put it "
        "in the caller's secret store now (send it as `Authorization: Bearer <key>`); only its "
        f"digest is kept. Revoke it with `csp apikey revoke {record.key_id}`.",
        err=True,
    )


@apikey_app.command("list")
def apikey_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Keys by id, with whom they act for (never the keys themselves)."""
    registry = open_registry()
    try:
        rows = registry.list_api_keys(include_revoked)
    finally:
        registry.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no API keys" + ("" if include_revoked else " (--all shows revoked ones)"))
        return
    default_rate = get_settings().api_rate_limit_per_minute
    typer.echo(f"{'key id':<16}  {'acts for':<24} {'rate/min':>8}  created (UTC)     state  label")
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        typer.echo(
            f"{row.key_id:<16}  {row.caller:<24} {row.rate_per_minute or default_rate:>8}  "
            f"{row.created_at:%Y-%m-%d %H:%M}  {state}  {row.label or ''}".rstrip()
        )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (csp apikey list).")],
) -> None:
    """Revoke a key at once: the API refuses it (401) from its next request."""
    if not is_key_id(key_id):
        raise fail(
            f"KEY_ID: a key id is 16 letters a-z and digits 2-7, as `csp apikey list` shows it "
            f"(got {key_id!r}); give the id, not the key",
            EXIT_INVALID,
        )
    registry = open_registry()
    try:
        record, now = registry.revoke_api_key(key_id)
    except UnknownApiKey as err:
        raise fail(str(err), EXIT_NOT_FOUND) from err
    finally:
        registry.dispose()
    when = f"{record.revoked_at:%Y-%m-%d %H:%M} UTC"
    typer.echo(
        f"API key {key_id} ({record.caller}) " + ("revoked" if now else f"already revoked {when}")
    )
