"""Submitting and steering orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from csp_core.models import Order, order_workflow_id
from csp_core.provisioning import OrderRequest, OrderStatus
from csp_core.rules import AcceptancePolicy
from csp_core.settings import Settings
from csp_core.stages import OrderStage
from temporalutil import search_attributes as sa
from workflows.order import LicenseOrderWorkflow

FINGERPRINT_MEMO = "order_fingerprint"


class OrderRefused(Exception):
    """The request cannot be taken; the message says why and what to do."""


@dataclass(frozen=True)
class SubmitResult:
    workflow_id: str
    run_id: str | None
    created: bool  # False when the same order had already been submitted


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


async def submit_order(client: Client, order: Order, settings: Settings) -> SubmitResult:
    """Start the order's workflow once. The same order again returns the same workflow; the
    same order id with different content is refused."""
    workflow_id = order_workflow_id(order.order_id)
    fingerprint = order.fingerprint()
    created = False
    description = await _describe(client, workflow_id)
    if description is None:
        try:
            await client.start_workflow(
                LicenseOrderWorkflow.run,
                OrderRequest(
                    order=order,
                    acceptance=acceptance_policy(settings),
                    provisioning_escalation=timedelta(hours=settings.provisioning_escalation_hours),
                ),
                id=workflow_id,
                task_queue=settings.task_queue,
                # A concurrent duplicate submit joins the running workflow.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={FINGERPRINT_MEMO: fingerprint},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.ORDER_ID, order.order_id),
                        SearchAttributePair(sa.RESELLER_ID, order.reseller.id),
                        SearchAttributePair(sa.CUSTOMER_DOMAIN, order.domain),
                        SearchAttributePair(sa.ORDER_STAGE, OrderStage.RECEIVED.value),
                    ]
                ),
                static_summary=summary(order)[:200],
            )
            created = True
        except WorkflowAlreadyStartedError:
            pass
        description = await _describe(client, workflow_id)
        assert description is not None
    existing = await description.memo_value(FINGERPRINT_MEMO, default=None)
    if existing != fingerprint:
        raise OrderRefused(
            f"order {order.order_id} was already submitted with different content; "
            "an order id cannot be reused: submit the change under a new order id"
        )
    return SubmitResult(workflow_id, description.run_id, created)


async def _describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def order_handle(client: Client, order_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(LicenseOrderWorkflow.run, order_workflow_id(order_id))


async def order_status(client: Client, order_id: str) -> OrderStatus:
    handle = order_handle(client, order_id)
    try:
        return await handle.query(LicenseOrderWorkflow.status)
    except RPCError as err:
        raise OrderRefused(f"order {order_id}: {err.message}") from err


async def accept_partner(client: Client, order_id: str, note: str | None = None) -> None:
    status = await order_status(client, order_id)
    if status.stage not in (OrderStage.AWAITING_PARTNER_ACCEPTANCE, OrderStage.LINKING_TENANT):
        raise OrderRefused(
            f"order {order_id} is at stage {status.stage.value}: it is not waiting for the "
            "client's partner acceptance"
        )
    await order_handle(client, order_id).signal(LicenseOrderWorkflow.partner_accepted, note)


async def cancel_order(client: Client, order_id: str, reason: str) -> None:
    status = await order_status(client, order_id)
    if not status.stage.cancellable:
        raise OrderRefused(
            f"order {order_id} is at stage {status.stage.value} and can no longer be cancelled "
            "here; once placed, a subscription is cancelled within 168 h of purchase "
            "(New Commerce rules)"
        )
    await order_handle(client, order_id).signal(LicenseOrderWorkflow.cancel_order, reason)


async def is_running(client: Client, order_id: str) -> bool:
    description = await order_handle(client, order_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING
