"""Ops tools beside the capabilities: ops tasks (`csp ops`: what to do by hand at the provider,
and confirming it), the e-mail ledger (`csp notices`) and payload encryption (`csp codec`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from temporalio.client import Client

from api import ops as ops_api
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
from csp_core.ops.tasks import NOTE_MAX, REFERENCE_MAX, OpsTask
from csp_core.registry import NotificationStatus
from csp_core.settings import get_settings
from csp_core.timezones import zone
from temporalutil.client import connect
from temporalutil.codec import PayloadKeyError

ops_app = typer.Typer(
    help="Ops tasks: operations the provider has no API for, to do by hand and confirm.",
    no_args_is_help=True,
)
notices_app = typer.Typer(help="E-mails sent, pending and undeliverable.", no_args_is_help=True)
codec_app = typer.Typer(help="Payload encryption: keys and the codec server.", no_args_is_help=True)

WorkflowId = Annotated[
    str, typer.Argument(help="The workflow that asked, as `csp ops tasks` shows.")
]
TaskId = Annotated[str, typer.Argument(help="The task's id, e.g. suspend-2026-05.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@ops_app.command("tasks")
def ops_tasks(as_json: AsJson = False) -> None:
    """The open ops tasks, soonest due first: what to do, where, by when, and how to confirm."""

    async def listed() -> ops_api.OpenTasks:
        return await ops_api.list_open_tasks(await connect(get_settings()))

    found = run(listed())
    for problem in found.unreadable:
        typer.secho(f"could not read the tasks of {problem}", fg=typer.colors.RED, err=True)
    if as_json:
        echo_json(found.tasks)
        return
    if not found.tasks:
        typer.echo("no open ops tasks")
        return
    tz = zone(get_settings().business_timezone)
    now = datetime.now(UTC)
    typer.echo(f"(times in {tz.key})")
    for task in found.tasks:
        late = "OVERDUE since" if task.overdue or task.deadline <= now else "due by"
        typer.echo(f"{task.workflow_id} {task.task_id}  {late} {format_local(task.deadline, tz)}")
        typer.echo(f"  {task.instruction()}")
        typer.echo(f"  why: {task.reason}")
        typer.echo(
            f"  confirm: csp ops confirm {task.workflow_id} {task.task_id} --reference <ref>"
        )


@ops_app.command("confirm")
def ops_confirm(
    workflow_id: WorkflowId,
    task_id: TaskId,
    reference: Annotated[
        str, typer.Option(help="The provider portal's reference (ticket, confirmation number).")
    ],
    note: Annotated[str | None, typer.Option(help="Anything worth keeping with it.")] = None,
    as_json: AsJson = False,
) -> None:
    """Ops did the task by hand at the provider: the workflow goes on as if the provider's API
    had done it. Refused (exit 3) for an unknown task or one already answered."""
    checked(
        lambda: ops_api.check_text("--reference", reference, REFERENCE_MAX, required=True),
        lambda: ops_api.check_text("--note", note, NOTE_MAX, required=False),
    )
    answer(
        workflow_id,
        task_id,
        as_json,
        lambda client: ops_api.confirm_task(client, workflow_id, task_id, reference, note),
    )


@ops_app.command("decline")
def ops_decline(
    workflow_id: WorkflowId,
    task_id: TaskId,
    reason: Annotated[str, typer.Option(help="Why it was not done (the reseller may read it).")],
    as_json: AsJson = False,
) -> None:
    """Ops could not do the task, or decided not to: it stays undone (a change the reseller
    asked for is told to them as not made). A paid reactivation cannot be declined."""
    checked(lambda: ops_api.check_text("--reason", reason, NOTE_MAX, required=True))
    answer(
        workflow_id,
        task_id,
        as_json,
        lambda client: ops_api.decline_task(client, workflow_id, task_id, reason),
    )


def answer(
    workflow_id: str,
    task_id: str,
    as_json: bool,
    call: Callable[[Client], Awaitable[OpsTask]],
) -> None:
    checked(lambda: ops_api.check_workflow_id(workflow_id), lambda: ops_api.check_task_id(task_id))

    async def ask() -> OpsTask:
        return await call(await connect(get_settings()))

    try:
        task = run(ask())
    except ops_api.OpsTaskNotFound as err:
        raise fail(str(err), EXIT_NOT_FOUND) from err
    except ops_api.OpsTaskRefused as err:
        raise fail(str(err), EXIT_REFUSED) from err
    if as_json:
        echo_json(task)
        return
    said = f" (reference {task.reference})" if task.reference else f": {task.note}"
    typer.echo(f"{workflow_id} {task_id}: {task.status.value}{said}")
    typer.echo(f"  {task.instruction()}")


def checked(*checks: Callable[[], object]) -> None:
    """Input rules first: a bad value exits 2 naming the argument, before anything is asked."""
    for check in checks:
        try:
            check()
        except ops_api.OpsInputError as err:
            raise fail(str(err), EXIT_INVALID) from err


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
