"""What the providers' events mean for the workflows (the HTTP side, with its signatures, is
http_api/webhooks/). Each function finds the workflows an event is about and tells them, at
most once in effect: the commands are idempotent (the acceptance Update's validator refuses an
order no longer waiting; a look at the provider is harmless), so an event delivered twice
changes nothing twice. An event about nothing we know is answered, and logged, as such: the
provider must not retry it forever.

Who an event is about comes from the registry, not from a visibility query: the order's stage
is recorded there (by the workflow, before it waits) and read at once, the registry is what the
API already holds, and it answers the same on the time-skipping test server, where visibility
queries are not served; visibility lags behind by up to a second on a real cluster.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.common import request_id_for
from api.orders import OrderRefused, accept_partner, order_handle
from csp_core.orders.models import order_workflow_id
from csp_core.providers.port import Provider, ProviderError
from csp_core.providers.xvantage import customer_order_number
from csp_core.registry import Registry
from csp_core.stages import OrderStage
from csp_core.subscriptions.values import subscription_workflow_id
from workflows.order import LicenseOrderWorkflow
from workflows.subscription import SubscriptionWorkflow

log = structlog.get_logger("webhooks")

# Partner Center's events we act on (others are answered "ignored").
RELATIONSHIP_ACCEPTED = frozenset(
    {
        "reseller-relationship-accepted-by-customer",
        "indirect-reseller-relationship-accepted-by-customer",
    }
)
SUBSCRIPTION_UPDATED = "subscription-updated"
# Orders that wait for the client's acceptance, and orders an order-status event can be about.
WAITING_FOR_ACCEPTANCE = [OrderStage.LINKING_TENANT, OrderStage.AWAITING_PARTNER_ACCEPTANCE]
PLACED = [OrderStage.PLACING_ORDER, OrderStage.ACTIVATING]
_CUSTOMER = re.compile(r"/customers/([^/?#]+)", re.IGNORECASE)
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?#]+)", re.IGNORECASE)


@dataclass
class Dispatched:
    """What an event did: `outcome` is signalled, nothing-to-do (already done, or closed),
    unknown (about nothing we know) or ignored (an event we do not act on)."""

    outcome: str
    detail: str
    workflows: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "detail": self.detail, "workflows": self.workflows}


def customer_of(resource_uri: str) -> str | None:
    """The customer (tenant id) a Partner Center resource URI names."""
    found = _CUSTOMER.search(resource_uri or "")
    return found.group(1).lower() if found else None


def subscription_of(resource_uri: str) -> str | None:
    found = _SUBSCRIPTION.search(resource_uri or "")
    return found.group(1) if found else None


async def partner_center_event(
    client: Client, registry: Registry, provider: Provider, name: str, resource_uri: str
) -> Dispatched:
    """A Partner Center event (EventName, ResourceUri): relationship accepted, or a
    subscription updated; any other is ignored."""
    if name.lower() in RELATIONSHIP_ACCEPTED:
        tenant = customer_of(resource_uri)
        if tenant is None:
            return _unknown(f"{name}: no customer in ResourceUri {resource_uri}")
        return await relationship_accepted(client, registry, provider, tenant)
    if name.lower() == SUBSCRIPTION_UPDATED:
        subscription_id = subscription_of(resource_uri)
        if subscription_id is None:
            return _unknown(f"{name}: no subscription in ResourceUri {resource_uri}")
        return await subscription_updated(client, subscription_id, name)
    log.info("webhook.ignored", what=name)
    return Dispatched("ignored", f"event {name} is not one we act on")


async def relationship_accepted(
    client: Client, registry: Registry, provider: Provider, tenant_id: str
) -> Dispatched:
    """The client accepted us: every order of that tenant waiting for it gets the acceptance
    (the same Update ops send; refused, harmlessly, by an order that no longer waits)."""
    waiting = await asyncio.to_thread(registry.find_orders, stages=WAITING_FOR_ACCEPTANCE)
    domain = await tenant_domain(registry, provider, tenant_id, sorted({o.domain for o in waiting}))
    if domain is None:
        return _unknown(f"no order waits for the acceptance of tenant {tenant_id}")
    told, done = [], []
    for order in (o for o in waiting if o.domain == domain):
        try:
            await accept_partner(client, order.order_id, "accepted (Partner Center event)")
            told.append(order_workflow_id(order.order_id))
        except OrderRefused as refused:  # no longer waiting, closed, or gone: nothing to do
            log.info("webhook.acceptance_not_needed", order_id=order.order_id, reason=str(refused))
            done.append(order_workflow_id(order.order_id))
    if not told:
        return Dispatched("nothing-to-do", f"no order of {domain} waits any more", done)
    log.info("webhook.acceptance_signalled", domain=domain, workflows=told)
    return Dispatched("signalled", f"acceptance of {domain} sent to {len(told)} order(s)", told)


async def tenant_domain(
    registry: Registry, provider: Provider, tenant_id: str, candidates: list[str]
) -> str | None:
    """Which of the waiting orders' domains is the tenant: the registry's tenants first, then
    the provider (the tenant is our customer once it accepted; a look-up per waiting domain)."""
    for domain in candidates:
        known = await asyncio.to_thread(registry.get_tenant, domain)
        if domain == tenant_id or (known is not None and known.tenant_id.lower() == tenant_id):
            return domain
    for domain in candidates:
        try:
            customer = await provider.find_customer_by_domain(domain)
        except ProviderError as err:
            log.warning("webhook.tenant_lookup_failed", domain=domain, error=str(err))
            continue
        if customer is not None and customer.tenant_id.lower() == tenant_id:
            return domain
    return None


async def subscription_updated(client: Client, subscription_id: str, event: str) -> Dispatched:
    """The subscription's workflow looks at the provider now and takes its view over."""
    workflow_id = subscription_workflow_id(subscription_id)
    handle = client.get_workflow_handle_for(SubscriptionWorkflow.run, workflow_id)
    if not await _signal(handle, SubscriptionWorkflow.provider_subscription_changed, event):
        return _unknown(f"no running workflow for subscription {subscription_id}")
    log.info("webhook.subscription_signalled", workflow_id=workflow_id)
    return Dispatched(
        "signalled", f"subscription {subscription_id} looks at the provider", [workflow_id]
    )


async def ingram_order_status(
    client: Client,
    registry: Registry,
    event: str,
    order_number: str | None,
    po_number: str | None,
) -> Dispatched:
    """Ingram's order-status event: the order it names (our provider order id, or our PO
    number) looks at provisioning now rather than at its next retry."""
    orders = []
    if order_number:
        orders = await asyncio.to_thread(registry.find_orders, provider_order_id=order_number)
    if not orders and po_number:
        placed = await asyncio.to_thread(registry.find_orders, stages=PLACED)
        orders = [o for o in placed if _po_number(o.order_id) == po_number]
    if not orders:
        return _unknown(f"no order of ours is Ingram order {order_number} / PO {po_number}")
    told = []
    for order in orders:
        if await _signal(
            order_handle(client, order.order_id), LicenseOrderWorkflow.provider_order_changed, event
        ):
            told.append(order_workflow_id(order.order_id))
    if not told:
        return Dispatched("nothing-to-do", "the order's workflow has finished")
    log.info("webhook.order_signalled", what=event, workflows=told)
    return Dispatched("signalled", f"{event}: provisioning looked at now", told)


def _po_number(order_id: str) -> str:
    return customer_order_number(request_id_for(order_workflow_id(order_id), "place-order"))


async def _signal(handle: Any, signal: Any, arg: str) -> bool:
    """Signal a running workflow; False when there is none (never started, or finished)."""
    try:
        await handle.signal(signal, arg)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _unknown(detail: str) -> Dispatched:
    log.info("webhook.unknown", detail=detail)
    return Dispatched("unknown", detail)
