"""structlog configuration for the worker, the CLI and the dev stack.

Temporal's own loggers (workflow.logger, activity.logger) go through the stdlib bridge and keep
their workflow/activity context. Nothing here ever logs payloads: they may hold personal data.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from temporalio import activity, workflow


def _drop_during_replay(_logger: object, _name: str, event: dict) -> dict:
    if workflow.in_workflow() and workflow.unsafe.is_replaying_history_events():
        raise structlog.DropEvent
    return event


def _temporal_context(_logger: object, _name: str, event: dict) -> dict:
    if activity.in_activity():
        info = activity.info()
        event.setdefault("workflow_id", info.workflow_id)
        event.setdefault("activity", info.activity_type)
        event.setdefault("attempt", info.attempt)
    elif workflow.in_workflow():
        info = workflow.info()
        event.setdefault("workflow_id", info.workflow_id)
        event.setdefault("run_id", info.run_id)
    return event


def _record_context(_logger: object, _name: str, event: dict) -> dict:
    record = event.get("_record")
    if record is not None:
        for attr in ("temporal_workflow", "temporal_activity"):
            ctx = getattr(record, attr, None)
            if isinstance(ctx, dict):
                for key in ("workflow_id", "workflow_type", "activity_type", "attempt"):
                    if key in ctx:
                        event.setdefault(key, ctx[key])
    return event


def configure_logging(
    level: str = "INFO", json: bool = False, stream: TextIO | None = None
) -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: rich's would print every frame's locals (payloads, so personal
        # data) and re-import rich inside the workflow sandbox, which refuses it.
        else structlog.dev.ConsoleRenderer(
            colors=(stream or sys.stderr).isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    structlog.configure(
        processors=[
            _drop_during_replay,
            _temporal_context,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _record_context],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # JSON lines carry the traceback as text in "exception"
                *([structlog.processors.format_exc_info] if json else []),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO on every start; its migrations still log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
