"""The order's process in four folded steps (open, place, provision-and-activate, and the
e-mails they send on the way), each one activity: a round trip to the server per step instead
of one per registry write, provider call and e-mail (issue 11).

`OrderSteps` extends `OrderActivities`, whose single-purpose activities stay registered: the
workflows started before the steps existed replay them (`workflows/order.py`, patch
`lean-order`), and the rare paths (a tenant to create, an expiry, a failure) still use them.
The registry hears of each stage from the step that runs next (`StageRecord`), and an e-mail
sent on the way is best effort: when it cannot go now the step says so and the workflow sends
it with the notice activity's retries, so the business state never waits on the mail server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import in_thread
from activities.order import OrderActivities
from csp_core.orders.models import TenantMode
from csp_core.orders.provisioning import (
    ActivateOrder,
    OpenOrder,
    OrderActivated,
    OrderNotice,
    OrderNoticeKind,
    OrderOpened,
    OrderPlaced,
    PlaceOrder,
    StageRecord,
    activating_detail,
    active_detail,
)
from csp_core.stages import OrderStage

log = structlog.get_logger(__name__)

# An e-mail sent on the way gets this long; then the workflow's notice activity takes over.
INLINE_NOTICE_TIMEOUT_S = 10.0
# The place step's own try at activating stays well inside its 60 s attempt.
FAST_ACTIVATION_BUDGET_S = 20.0
# Linking a tenant the provider does not show yet: look again after 5 s, doubling up to 15 min.
LINK_RETRY_FIRST = timedelta(seconds=5)
LINK_RETRY_MAX = timedelta(minutes=15)
# ApplicationError type: ops confirmed an acceptance the provider never showed by `link_by`.
TENANT_NOT_VISIBLE = "TenantNotVisible"


@dataclass
class OrderSteps(OrderActivities):
    @activity.defn
    async def open_order(self, step: OpenOrder) -> OrderOpened:
        """Record the order, then find its tenant; if the client must accept us first, record
        the wait and e-mail the invitation."""
        order = step.order
        await self._record_order(order, step.record.stage, step.record.detail)
        if order.tenant.mode is TenantMode.CREATE:
            domain_check = await self.check_domain(order)
            opened = OrderOpened(domain_check=domain_check)
            # Our tenant already, but for other resellers only: this reseller's client accepts.
            must_accept = domain_check.known_tenant is not None and not (
                domain_check.reseller_accepted
            )
        else:
            link_check = await self.lookup_tenant(order)
            opened = OrderOpened(link_check=link_check)
            must_accept = link_check.tenant is None
        if not must_accept:
            return opened
        await self._record_stage(order.order_id, step.waiting)
        invitation = OrderNotice(
            kind=OrderNoticeKind.INVITATION, order=order, deadline=step.deadline
        )
        return opened.model_copy(update={"invited": await self._notify_on_the_way(invitation)})

    @activity.defn
    async def place(self, step: PlaceOrder) -> OrderPlaced:
        """Link the accepted tenant if need be, place the order; then activate it if the
        provider provisioned it at once, else record it as ACTIVATING."""
        order = step.order
        await self._record_stage(order.order_id, step.record)
        tenant = step.tenant
        if tenant is None:
            try:
                tenant = await self.link_accepted_tenant(order)
            except ApplicationError as err:
                # The server's clock (the attempt's scheduled time), as the workflow's link_by.
                now = activity.info().current_attempt_scheduled_time
                late = step.link_by is not None and now >= step.link_by
                if err.type == "NotYetVisible" and late:
                    raise ApplicationError(
                        f"{err.message}, and was still not on {step.link_by:%Y-%m-%d %H:%M} UTC:"
                        " the acceptance ops confirmed does not show at the provider",
                        type=TENANT_NOT_VISIBLE,
                        non_retryable=True,
                    ) from err
                if err.type == "NotYetVisible":
                    # Partner Center refreshes every 15 minutes: look again at a widening pace.
                    attempt = activity.info().attempt
                    raise ApplicationError(
                        err.message, type=err.type, next_retry_delay=_link_backoff(attempt)
                    ) from err
                raise
        placed = await self._place(order, tenant)
        activated = await self._activate_if_provisioned(
            ActivateOrder(
                order=order,
                tenant=tenant,
                placed=placed,
                record=StageRecord(
                    stage=OrderStage.ACTIVE, detail=active_detail(tenant.domain, placed)
                ),
            )
        )
        if activated is None:
            await in_thread(
                self.registry.set_order_stage,
                order.order_id,
                OrderStage.ACTIVATING.value,
                activating_detail(placed),
                placed.provider_order_id,
            )
        return OrderPlaced(tenant=tenant, placed=placed, activated=activated)

    @activity.defn
    async def provision_and_activate(self, step: ActivateOrder) -> OrderActivated:
        """One look at provisioning ('pending' fails the attempt, so the retry policy polls);
        once provisioned: the licenses, their workflows, the ACTIVE stage and its e-mail."""
        await self.await_provisioning(step.tenant, step.placed)
        return await self._activate_order(step)

    async def _activate_if_provisioned(self, step: ActivateOrder) -> OrderActivated | None:
        """Provisioned at once (the usual case): activate now, which saves the workflow a step.
        Still pending, or anything failing on the way, is left to the activation step and its
        patient retries (every part of the activation is idempotent)."""
        try:
            async with asyncio.timeout(FAST_ACTIVATION_BUDGET_S):
                await self.await_provisioning(step.tenant, step.placed)
                return await self._activate_order(step)
        except Exception as err:  # not CancelledError: a cancelled place stops here
            reason = err.type if isinstance(err, ApplicationError) else type(err).__name__
            log.info("activation_left_to_its_step", order_id=step.order.order_id, reason=reason)
            return None

    async def _activate_order(self, step: ActivateOrder) -> OrderActivated:
        """The licenses, their workflows, the ACTIVE stage and its e-mail."""
        await self._activate(step.order, step.tenant, step.placed, record_terms=True)
        await in_thread(
            self.registry.set_order_stage,
            step.order.order_id,
            step.record.stage.value,
            step.record.detail,
            step.placed.provider_order_id,
        )
        active = OrderNotice(
            kind=OrderNoticeKind.ACTIVE,
            order=step.order,
            tenant_created=step.tenant.credentials_ref is not None,
        )
        return OrderActivated(notified=await self._notify_on_the_way(active))

    # ------------------------------------------------------------------ helpers
    async def _record_stage(self, order_id: str, record: StageRecord) -> None:
        await self.record_stage(order_id, record.stage, record.detail)

    async def _notify_on_the_way(self, notice: OrderNotice) -> bool:
        """Send `notice` now if the mail server takes it; False leaves it to the workflow."""
        try:
            await asyncio.wait_for(self.notify(notice), INLINE_NOTICE_TIMEOUT_S)
        except (ApplicationError, TimeoutError) as err:
            log.warning(
                "notice_left_to_workflow",
                key=notice.key,
                error=err.type if isinstance(err, ApplicationError) else "timeout",
            )
            return False
        return True


def _link_backoff(attempt: int) -> timedelta:
    return min(LINK_RETRY_FIRST * 2 ** min(attempt - 1, 16), LINK_RETRY_MAX)
