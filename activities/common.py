"""Helpers shared by the activity classes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from csp_core.notifications.mailer import Mailer
from csp_core.notifications.messages import Email
from csp_core.providers.port import ProviderError
from csp_core.registry import Registry

P = ParamSpec("P")
T = TypeVar("T")

# Activity error types the workflows react to (ApplicationError.type).
NOTICE_UNDELIVERABLE = "NoticeUndeliverable"  # the mail server refused the notice for good

_REQUEST_NAMESPACE = uuid.UUID("5f1f7a52-3c1d-4b8e-9a56-0c5b3f3e9d21")


def request_id(purpose: str) -> str:
    """A stable MS-RequestId for one logical provider request of this workflow.

    Derived from the workflow id, so every retry of the activity (even after a worker crash)
    sends the same id and the provider does the work once.
    """
    info = activity.info()
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{info.workflow_id}:{purpose}"))


def provider_failure(err: ProviderError, doing: str) -> ApplicationError:
    """Translate a provider error: transient ones retry (honouring Retry-After), others stop."""
    message = f"{doing}: provider answered {err.status}" + (f" ({err.code})" if err.code else "")
    message += f": {err}"
    if err.transient:
        delay = None
        if err.retry_after_seconds is not None:
            delay = timedelta(seconds=err.retry_after_seconds)
        elif err.status == 409:
            # Partner Center answers 409 while a renewal is in progress: retry after ~2 min.
            delay = timedelta(minutes=2)
        return ApplicationError(message, type="ProviderUnavailable", next_retry_delay=delay)
    return ApplicationError(message, type="ProviderRejected", non_retryable=True)


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking registry work off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def send_once(
    registry: Registry,
    mailer: Mailer,
    email: Email,
    *,
    order_id: str | None = None,
    subscription_id: str | None = None,
    period: str | None = None,
) -> bool:
    """Send an e-mail at most once per key: claim it in the ledger, send, and release the claim
    if sending fails so the activity's retry sends it. False when it had already gone out."""
    claimed = await in_thread(
        registry.claim_notification,
        email.key,
        email.kind,
        ",".join(email.to),
        order_id,
        subscription_id,
        period,
    )
    if not claimed:
        return False
    try:
        await mailer.send(email)
    except Exception:
        await in_thread(registry.release_notification, email.key)
        raise
    return True
