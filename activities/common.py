"""Helpers shared by the activity classes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError

from csp_core.notifications.mailer import MailDeliveryError, Mailer
from csp_core.notifications.messages import Email
from csp_core.providers.port import NOT_OFFERED_BY_PROVIDER, ProviderError
from csp_core.registry import NotificationRecord, NotificationStatus, Registry
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.values import SubscriptionStart, subscription_workflow_id
from temporalutil import search_attributes as sa

P = ParamSpec("P")
T = TypeVar("T")

# Activity error types the workflows react to (ApplicationError.type).
NOTICE_UNDELIVERABLE = "NoticeUndeliverable"  # the mail server refused the notice for good
MAIL_UNAVAILABLE = "MailUnavailable"  # the mail server could not take it now: retried
LEDGER_UNAVAILABLE = "LedgerUnavailable"  # the e-mail ledger (registry) is unreachable: retried
# The provider has no API for the operation (Ingram: suspend, seats, cancel...): never retried;
# the workflow asks ops to do it by hand instead (an ops task).
PROVIDER_NOT_OFFERED = "ProviderNotOffered"

_REQUEST_NAMESPACE = uuid.UUID("5f1f7a52-3c1d-4b8e-9a56-0c5b3f3e9d21")


def request_id(purpose: str) -> str:
    """A stable MS-RequestId for one logical provider request of this workflow.

    Derived from the workflow id, so every retry of the activity (even after a worker crash)
    sends the same id and the provider does the work once.
    """
    return request_id_for(activity.info().workflow_id, purpose)


def request_id_for(workflow_id: str, purpose: str) -> str:
    """`request_id` of a workflow's activity, known outside it (a provider's event names the
    order by what we sent: Ingram's customerOrderNumber derives from it)."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{workflow_id}:{purpose}"))


def provider_failure(err: ProviderError, doing: str) -> ApplicationError:
    """Translate a provider error: transient ones retry (honouring Retry-After), others stop."""
    message = f"{doing}: provider answered {err.status}" + (f" ({err.code})" if err.code else "")
    message += f": {err}"
    if err.code == NOT_OFFERED_BY_PROVIDER:
        # Details: whose portal ops must use instead.
        provider = getattr(err, "provider", "the provider")
        return ApplicationError(message, provider, type=PROVIDER_NOT_OFFERED, non_retryable=True)
    if err.transient:
        delay = None
        if err.retry_after_seconds is not None:
            delay = timedelta(seconds=err.retry_after_seconds)
        elif err.status == 409:
            # Partner Center answers 409 while a renewal is in progress: retry after ~2 min.
            delay = timedelta(minutes=2)
        return ApplicationError(message, type="ProviderUnavailable", next_retry_delay=delay)
    return ApplicationError(message, type="ProviderRejected", non_retryable=True)


async def start_subscription_workflow(
    client: Client,
    task_queue: str,
    start: SubscriptionStart,
    *,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
) -> None:
    """Start a license's SubscriptionWorkflow once: a retry (or a second caller) finds it
    running and leaves it (USE_EXISTING). Shared by an order's activation and adoption."""
    await client.start_workflow(
        "SubscriptionWorkflow",
        start,
        id=subscription_workflow_id(start.subscription_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=id_reuse_policy,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.SUBSCRIPTION_ID, start.subscription_id),
                SearchAttributePair(sa.SUBSCRIPTION_STATUS, SubscriptionStatus.ACTIVE.value),
                SearchAttributePair(sa.SEATS, start.seats),
                SearchAttributePair(sa.AUTO_RENEW, start.auto_renew),
                SearchAttributePair(sa.CANCELLABLE_UNTIL, start.cancellable_until),
                SearchAttributePair(sa.TERM_ENDS_ON, start.term_ends_on),
                SearchAttributePair(sa.CUSTOMER_DOMAIN, start.domain),
                SearchAttributePair(sa.RESELLER_ID, start.reseller_id),
            ]
        ),
        static_summary=f"{start.product_name} · {start.domain} · {start.subscription_id}"[:200],
        # Called from an activity, with the worker's own client: the server hands the first
        # workflow task back in its answer when this worker has room (no task queue dispatch).
        request_eager_start=True,
    )


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
    claimed: NotificationRecord | None = None,
) -> bool:
    """Send a notice at least once, and never again once the mail server took it.

    The ledger row is claimed (PENDING) before sending and marked SENT after. A PENDING row
    found by a later attempt (the previous one failed, or its worker died between claim and
    send, or between send and mark) is sent again: at least once, never lost; the Message-ID
    comes from `email.key`, so such a duplicate is recognisable downstream.

    Returns True when this call sent it, False when the ledger says it was already sent.
    Raises ApplicationError:
    - NOTICE_UNDELIVERABLE (non-retryable) when the mail server refuses it for good (5xx, bad
      credentials...): the row becomes UNDELIVERABLE with the reason, for ops. A later attempt
      for an UNDELIVERABLE row raises the same, without contacting the mail server again.
    - MAIL_UNAVAILABLE (retryable) for a transient failure (connection refused, timeout, 4xx):
      the row stays PENDING with the attempt and error recorded; the retry sends.
    - LEDGER_UNAVAILABLE (retryable) when the registry cannot be reached: the row stays PENDING
      (or absent), so the retry sends.

    `claimed`: the row the caller claimed already (claim_notice, in its own trip to a thread).
    """
    row = claimed or await ledger_call(
        "claiming", email.key, claim_notice, registry, email, order_id, subscription_id, period
    )
    if row.status is NotificationStatus.SENT:
        return False
    if row.status is NotificationStatus.UNDELIVERABLE:
        raise _undeliverable(email, row.undeliverable_reason or "refused by the mail server")
    try:
        await mailer.send(email)
    except MailDeliveryError as err:
        reason = str(err)  # names host, kind and key, never the SMTP password or the body
        if not err.retryable:
            await ledger_call(
                "recording the refusal of",
                email.key,
                registry.mark_notification_failed,
                email.key,
                reason,
                permanent=True,
            )
            raise _undeliverable(email, reason) from None
        # Only bookkeeping for ops (attempts, last error): the retry sends either way.
        with contextlib.suppress(SQLAlchemyError):
            await in_thread(registry.mark_notification_failed, email.key, reason, permanent=False)
        raise ApplicationError(reason, type=MAIL_UNAVAILABLE) from None
    await ledger_call(
        "recording the delivery of", email.key, registry.mark_notification_sent, email.key
    )
    return True


def claim_notice(
    registry: Registry,
    email: Email,
    order_id: str | None = None,
    subscription_id: str | None = None,
    period: str | None = None,
) -> NotificationRecord:
    """send_once's claim of the e-mail ledger's row (blocking)."""
    return registry.begin_notification_attempt(
        email.key, email.kind, ",".join(email.to), order_id, subscription_id, period
    )


def _undeliverable(email: Email, reason: str) -> ApplicationError:
    return ApplicationError(
        f"{email.kind} notice {email.key} is undeliverable: {reason}",
        type=NOTICE_UNDELIVERABLE,
        non_retryable=True,
    )


async def ledger_call(
    doing: str, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run a ledger call; a database failure becomes a retryable, secret-free activity error."""
    try:
        return await in_thread(fn, *args, **kwargs)
    except SQLAlchemyError as err:
        # The driver's message may name the server; the type is enough to tell an outage.
        raise ApplicationError(
            f"e-mail ledger unavailable while {doing} notice {key}: {type(err).__name__}",
            type=LEDGER_UNAVAILABLE,
        ) from None
