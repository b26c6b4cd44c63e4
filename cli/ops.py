"""Ops tools beside the capabilities: the e-mail ledger (`csp notices`) and payload
encryption (`csp codec`)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import EXIT_INVALID, echo_json, fail, open_registry
from csp_core.registry import NotificationStatus
from csp_core.settings import get_settings
from temporalutil.codec import PayloadKeyError

notices_app = typer.Typer(help="E-mails sent, pending and undeliverable.", no_args_is_help=True)
codec_app = typer.Typer(help="Payload encryption: keys and the codec server.", no_args_is_help=True)


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
        raise fail(
            f"--status: must be undeliverable, pending, sent or all (got {status!r})",
            EXIT_INVALID,
        )
    registry = open_registry()
    try:
        rows = registry.list_notifications(
            None if wanted is None else NotificationStatus[wanted], order_id=order_id
        )
    finally:
        registry.dispose()
    if as_json:
        echo_json(rows)
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
        raise fail(str(err), EXIT_INVALID) from err
    token = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else None
    uvicorn.run(
        create_app(codec, settings.codec_cors_origins, token),
        host=host,
        port=port or settings.codec_server_port,
        log_level="warning",
    )
