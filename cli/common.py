"""What every CLI command shares: exit codes, running a coroutine against Temporal (an
unreachable server is exit 5 in one line), failing with a message, and opening the registry."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

import typer
from pydantic import BaseModel
from temporalio.service import RPCError, RPCStatusCode

from csp_core.registry import Registry
from csp_core.settings import Settings, get_settings
from temporalutil.client import TemporalUnreachable
from temporalutil.codec import PayloadKeyError

EXIT_INVALID, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 2, 3, 4, 5
T = TypeVar("T")


def unreachable(settings: Settings) -> str:
    # One line: the transport's internals (tonic/hyper errors) help nobody at a terminal.
    return (
        f"cannot connect to Temporal at {settings.temporal_address} "
        f"(namespace {settings.temporal_namespace}): is it running? "
        "Start it (make run) or set TEMPORAL_ADDRESS to its host:port"
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except TemporalUnreachable as err:
        raise fail(unreachable(get_settings()), EXIT_UNAVAILABLE) from err
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise fail(unreachable(get_settings()), EXIT_UNAVAILABLE) from err
        raise
    except PayloadKeyError as err:
        raise fail(str(err), EXIT_INVALID) from err
    finally:
        gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit


def fail(message: str, code: int) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def open_registry() -> Registry:
    return Registry.from_url(get_settings().database_url)


def echo_json(rows: BaseModel | Iterable[BaseModel]) -> None:
    """One record, or a list of them, as indented JSON (what `--json` prints)."""
    if isinstance(rows, BaseModel):
        typer.echo(rows.model_dump_json(indent=2))
        return
    typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
