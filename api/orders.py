"""Submitting and steering orders.

Plain async functions over a Temporal client (and the registry), for the CLI and an HTTP API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from csp_core.orders.acceptance import AcceptancePolicy
from csp_core.orders.models import Order, order_workflow_id
from csp_core.orders.provisioning import OrderRequest, OrderStatus, opening_stage
from csp_core.registry import OrderRecord, Registry
from csp_core.settings import Settings
from temporalutil import search_attributes as sa
from workflows.order import LicenseOrderWorkflow

FINGERPRINT_MEMO = "order_fingerprint"


class OrderRefused(Exception):
    """The request cannot be taken; the message says why and what to do. `code` is the
    workflow's error type when it refused (e.g. NotAwaitingAcceptance, OrderFinal)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OrderNotFound(OrderRefused):
    """No workflow exists for the order id (never submitted, or its history is gone)."""


@dataclass(frozen=True)
class SubmitResult:
    workflow_id: str
    run_id: str | None
    created: bool  # False when the same order had already been submitted
    # Set when the registry already holds the order's final outcome: nothing was started.
    recorded: OrderRecord | None = None

    @property
    def already_processed(self) -> bool:
        return self.recorded is not None and self.recorded.stage.is_final

    def describe(self) -> str:
        """One line for people: what happened to this submission."""
        if self.recorded is not None and self.already_processed:
            outcome = self.recorded.stage.value
            if self.recorded.provider_order_id:
                outcome += f" (provider order {self.recorded.provider_order_id})"
            elif self.recorded.stage_detail:
                outcome += f" ({self.recorded.stage_detail})"
            return f"{self.recorded.order_id}: already processed: {outcome}"
        verb = "started" if self.created else "already submitted; same workflow"
        return f"{self.workflow_id}: {verb} (run {self.run_id})"


def acceptance_policy(settings: Settings) -> AcceptancePolicy:
    return AcceptancePolicy(
        reminder_days=settings.acceptance_reminder_days,
        expiry_days=settings.acceptance_expiry_days,
        poll_interval=timedelta(minutes=settings.acceptance_poll_minutes),
    )


def summary(order: Order) -> str:
    seats = sum(item.quantity for item in order.items)
    return (
        f"Order {order.order_id} · {order.domain} ({order.tenant.mode.value}) · "
        f"reseller {order.reseller.id} · {len(order.items)} line(s), {seats} seat(s)"
    )


async def submit_order(
    client: Client, registry: Registry, order: Order, settings: Settings
) -> SubmitResult:
    """Start the order's workflow once. The same order again returns the same workflow; the
    same order id with different content is refused.

    The registry is the judge, not Temporal: Temporal forgets a closed run after its retention
    period, the registry does not. An order it holds with a final stage is answered with its
    recorded outcome and nothing starts; one it holds with other content is refused.
    """
    workflow_id = order_workflow_id(order.order_id)
    fingerprint = order.fingerprint()
    recorded = await asyncio.to_thread(registry.get_order, order.order_id)
    if recorded is not None and recorded.fingerprint != fingerprint:
        raise OrderRefused(
            f"order {order.order_id} was already submitted with different content "
            f"(recorded {recorded.created_at:%Y-%m-%d}, now {recorded.stage.value}); "
            "an order id cannot be reused: submit the change under a new order id"
        )
    if recorded is not None and recorded.stage.is_final:
        return SubmitResult(workflow_id, None, created=False, recorded=recorded)
    # Not recorded yet, or still in progress: start its workflow. One that runs already (or ran:
    # ids are never reused) is joined if it holds the same order. Only then is it described: a
    # new order costs the server a start and nothing more.
    for _ in range(2):
        try:
            started = await _start(client, order, fingerprint, settings)
            return SubmitResult(workflow_id, started.result_run_id, created=True)
        except WorkflowAlreadyStartedError:
            pass
        description = await _describe(client, workflow_id)
        if description is not None:
            break
        # The run that refused the start left Temporal (retention) meanwhile: start again.
    else:
        raise RuntimeError(f"workflow {workflow_id} neither starts nor can be described")
    existing = await description.memo_value(FINGERPRINT_MEMO, default=None)
    if existing != fingerprint:
        raise OrderRefused(
            f"order {order.order_id} was already submitted with different content; "
            "an order id cannot be reused: submit the change under a new order id"
        )
    return SubmitResult(workflow_id, description.run_id, created=False)


async def _start(
    client: Client, order: Order, fingerprint: str, settings: Settings
) -> WorkflowHandle[Any, OrderStatus]:
    """Start the order's workflow; WorkflowAlreadyStartedError when its id runs or ran."""
    workflow_id = order_workflow_id(order.order_id)
    return await client.start_workflow(
        LicenseOrderWorkflow.run,
        OrderRequest(
            order=order,
            acceptance=acceptance_policy(settings),
            provisioning_escalation=timedelta(hours=settings.provisioning_escalation_hours),
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        memo={FINGERPRINT_MEMO: fingerprint},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.ORDER_ID, order.order_id),
                SearchAttributePair(sa.RESELLER_ID, order.reseller.id),
                SearchAttributePair(sa.CUSTOMER_DOMAIN, order.domain),
                SearchAttributePair(sa.ORDER_STAGE, opening_stage(order).stage.value),
            ]
        ),
        static_summary=summary(order)[:200],
    )


async def _describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def order_not_found(client: Client, order_id: str) -> OrderNotFound:
    """The answer for an order no workflow holds (also what another reseller's order looks like
    to a reseller: the same words, so nothing tells the two apart)."""
    return OrderNotFound(
        f"order {order_id} not found: no workflow {order_workflow_id(order_id)} in namespace "
        f"{client.namespace} (check the order id)"
    )


def order_handle(client: Client, order_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(LicenseOrderWorkflow.run, order_workflow_id(order_id))


async def order_status(client: Client, order_id: str) -> OrderStatus:
    handle = order_handle(client, order_id)
    try:
        return await handle.query(LicenseOrderWorkflow.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise order_not_found(client, order_id) from err
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise  # Temporal itself is unreachable: not a fact about the order
        raise OrderRefused(f"order {order_id}: {err.message}") from err


async def accept_partner(client: Client, order_id: str, note: str | None = None) -> OrderStatus:
    """Ops confirm the client's acceptance. The workflow's validator refuses it (at once, with
    the reason) when the order is not waiting for it."""
    return await _command(
        client, order_id, LicenseOrderWorkflow.accept_partner, note, "nothing left to accept"
    )


async def cancel_order(client: Client, order_id: str, reason: str) -> OrderStatus:
    """Cancel before the order is placed; refused after, with the way out (168 h rule)."""
    return await _command(
        client,
        order_id,
        LicenseOrderWorkflow.cancel,
        reason,
        "it can no longer be cancelled as an order; cancel its subscriptions within 168 h of "
        "the purchase instead (New Commerce rules)",
    )


async def _command(
    client: Client, order_id: str, update: Any, arg: str | None, when_closed: str
) -> OrderStatus:
    handle = order_handle(client, order_id)
    try:
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise OrderRefused(cause.message, cause.type) from err
        raise OrderRefused(str(cause or err)) from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise
            raise OrderRefused(f"order {order_id}: {err.message}") from err
    # No running workflow: closed (its stage is in its search attributes) or never submitted.
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise order_not_found(client, order_id) from err
        raise
    stage = description.typed_search_attributes.get(sa.ORDER_STAGE) or "closed"
    raise OrderRefused(f"order {order_id} is already {stage}: {when_closed}")


async def order_reseller(client: Client, registry: Registry, order_id: str) -> str | None:
    """Whose order it is: the reseller its workflow was started for, or, once the workflow is
    gone (retention), the one the registry recorded; None when neither knows the order."""
    try:
        description = await order_handle(client, order_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    else:
        if (reseller := description.typed_search_attributes.get(sa.RESELLER_ID)) is not None:
            return reseller
    recorded = await asyncio.to_thread(registry.get_order, order_id)
    return recorded.reseller_id if recorded is not None else None


def recorded_status(recorded: OrderRecord) -> OrderStatus:
    """An order whose workflow is gone (retention), as the registry remembers it, in the shape
    the workflow's `status` query answers."""
    return OrderStatus(
        order_id=recorded.order_id,
        stage=recorded.stage,
        domain=recorded.domain,
        reseller_id=recorded.reseller_id,
        provider_order_id=recorded.provider_order_id,
        detail=recorded.stage_detail or "",
    )


def closed_refusal(recorded: OrderRecord, refusal: str) -> str:
    """Why a command cannot reach an order the registry remembers but whose workflow is gone."""
    return (
        f"order {recorded.order_id} is {recorded.stage.value} (recorded "
        f"{recorded.updated_at:%Y-%m-%d}) and {refusal}: its workflow has finished"
    )


async def is_running(client: Client, order_id: str) -> bool:
    description = await order_handle(client, order_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING
