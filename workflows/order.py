"""LicenseOrderWorkflow: purchase → tenant (create or link) → partner acceptance → order → active.

Reads as the reseller guide describes the process:
  1. record the order;
  2. create the client's tenant, or link the client's own one (waiting, with reminders, for the
     client to accept us and our distributor as partners when the tenant was used elsewhere);
  3. place the order with the provider and wait for provisioning;
  4. record the licenses against the tenant and tell the reseller.
Ops steer it with the `partner_accepted` and `cancel_order` signals and read it with `status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.order import OrderActivities
    from activities.order_steps import OrderSteps
    from csp_core.calendar import business_time
    from csp_core.orders.failures import FailureCode, OrderFailure
    from csp_core.orders.models import Order, TenantMode
    from csp_core.orders.provisioning import (
        ActivateOrder,
        DomainCheck,
        OpenOrder,
        OrderActivated,
        OrderNotice,
        OrderNoticeKind,
        OrderRequest,
        OrderStatus,
        PlacedSubscriptions,
        PlaceOrder,
        StageRecord,
        TenantRef,
        activating_detail,
        active_detail,
        opening_stage,
    )
    from csp_core.stages import OpsAttention, OrderStage
    from temporalutil import search_attributes as sa
    from workflows.common import BackgroundNotices, OpsAlerts

# Provider calls retry with backoff for up to a day (throttling, outages); business refusals
# are non-retryable and end the order as FAILED with the reason.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
PROVIDER_CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(days=1),
    retry_policy=PROVIDER_RETRY,
)
# Provisioning is eventually consistent (Partner Center refreshes every 15 min): poll by retry.
PROVISIONING_POLL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(days=3),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=1.5,
        maximum_interval=timedelta(minutes=15),
        non_retryable_error_types=["ProvisioningFailed"],
    ),
)
BOOKKEEPING = dict(start_to_close_timeout=timedelta(seconds=30))
# A provider write is retried with its stable request id until it succeeds or the provider
# refuses it: giving up on a write the provider may have committed would end a billed order
# FAILED. Ops see a long PLACING_ORDER / CREATING_TENANT stage and the activity's last failure.
PROVIDER_WRITE = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=PROVIDER_RETRY,
)
# Recording a created tenant waits for the registry as long as it takes.
REGISTRY_WAIT = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
    ),
)
PROVISIONING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(minutes=15),
    non_retryable_error_types=["ProvisioningFailed"],
)
# After the escalation, keep looking, one activity (with its own retries) per day.
PROVISIONING_RECHECK = timedelta(days=1)

# Patches (replay of histories written before each change):
# provisioning slower than its horizon escalates to ops and keeps polling, never FAILED;
PATIENT_PROVISIONING = "patient-provisioning"
# a tenant known for other resellers only waits for this reseller's partner acceptance.
TENANT_OWNERSHIP = "tenant-ownership"
# the provider's order-status event (`provider_order_changed`) cuts a provisioning retry's
# backoff short: the look-up runs at once.
PROVISIONING_WAKE = "provisioning-wake"
# the process in folded steps (activities/order_steps.py): a round trip per step, stages recorded
# by the step that follows, e-mails sent on the way (issue 11).
LEAN_ORDER = "lean-order"
# lean-order, and the order system's start carries the opening stage as OrderStage
# (api/orders.py), so the first task need not replace it: one upsert less per order. Asked first,
# it implies lean-order: a new history still holds one patch marker.
OPENS_AT_START = "order-opens-at-start"
# Ops confirmed an acceptance: the provider gets this long to show the tenant before the order
# fails (eventual consistency; a wrong confirmation must not keep the order forever).
LINK_PATIENCE = timedelta(days=1)


@workflow.defn
class LicenseOrderWorkflow:
    @workflow.init
    def __init__(self, request: OrderRequest) -> None:
        self._order: Order = request.order
        self._stage = OrderStage.RECEIVED
        self._detail = "Order received."
        self._tenant: TenantRef | None = None
        self._placed: PlacedSubscriptions | None = None
        self._waiting_since: datetime | None = None
        self._deadline: datetime | None = None
        self._reminders_sent = 0
        self._accepted_by_signal = False
        self._cancel_reason: str | None = None
        self._cancel_refused: str | None = None
        self._provider_news = 0  # order-status events received (provider_order_changed)
        self._alerts = OpsAlerts()
        self._notices = BackgroundNotices(self._alerts, on_change=self._refresh_details)

    # ------------------------------------------------------------------ the process
    @workflow.run
    async def run(self, request: OrderRequest) -> OrderStatus:
        try:
            await self._process(request)
        finally:
            # E-mails never hold the stage, but the workflow waits for them before closing.
            await self._notices.drain()
        return self.status()

    async def _process(self, request: OrderRequest) -> None:
        try:
            opens_at_start = workflow.patched(OPENS_AT_START)
            if opens_at_start or workflow.patched(LEAN_ORDER):
                await self._in_steps(request, opens_at_start)
            else:
                await self._step_by_step(request)
        except _Expired:
            pass
        except _Cancelled:
            await self._cancelled()
        except ActivityError as err:
            await self._failed(_failure(err, self._order.domain))
        except _Failed as failed:
            await self._failed(failed.failure)

    async def _in_steps(self, request: OrderRequest, opens_at_start: bool = False) -> None:
        """Open (record it, find the tenant, invite the client if need be), wait for the
        client's acceptance if need be, place, then activate once provisioned."""
        order = self._order
        opening = opening_stage(order)
        started_at = workflow.info().typed_search_attributes.get(sa.ORDER_STAGE)
        if opens_at_start and started_at == opening.stage.value:
            self._stage = opening.stage  # the start set the search attribute already
            self._set_details(opening.detail)
        else:
            self._show(opening.stage, opening.detail)
        since = workflow.now()  # the wait for the client's acceptance, if any, starts now
        deadline = request.acceptance.deadline(since)
        opened = await workflow.execute_activity_method(
            OrderSteps.open_order,
            OpenOrder(
                order=order,
                record=opening,
                waiting=StageRecord(
                    stage=OrderStage.AWAITING_PARTNER_ACCEPTANCE,
                    detail=_waiting_detail(order.domain, since, deadline, reminders_sent=0),
                ),
                deadline=deadline,
            ),
            summary="Record order, find tenant",
            **PROVIDER_CALL,
        )
        tenant: TenantRef | None
        if opened.domain_check is not None:
            tenant = await self._tenant_to_create(
                request, opened.domain_check, since, opened.invited
            )
        else:
            assert opened.link_check is not None
            tenant = opened.link_check.tenant
            if tenant is None:
                self._raise_if_cancelled()
                poll = opened.link_check.other_resellers_tenant is None
                if not await self._await_partner_acceptance(
                    request, poll_provider=poll, since=since, invited=opened.invited
                ):
                    return
                tenant = self._tenant  # found by the provider poll; else ops confirmed it
        if self._cancel_reason is not None:
            await self._cancelled()
            return
        await self._place_and_activate(request, tenant)

    async def _tenant_to_create(
        self, request: OrderRequest, check: DomainCheck, since: datetime, invited: bool
    ) -> TenantRef | None:
        """Create mode: ours already (None: another reseller's, accepted now), or create it."""
        if check.known_tenant is not None:
            if check.reseller_accepted:
                return check.known_tenant
            if not await self._await_partner_acceptance(
                request, poll_provider=False, since=since, invited=invited
            ):
                raise _Expired()
            return None  # the place step links it
        return await self._create_new_tenant(check)

    async def _place_and_activate(self, request: OrderRequest, tenant: TenantRef | None) -> None:
        order = self._order
        placing = StageRecord(
            stage=OrderStage.PLACING_ORDER,
            detail=f"Placing {len(order.items)} line(s) on tenant **{order.domain}**.",
        )
        self._show(placing.stage, placing.detail)
        done = await workflow.execute_activity_method(
            OrderSteps.place,
            PlaceOrder(
                order=order,
                tenant=tenant,
                record=placing,
                link_by=workflow.now() + LINK_PATIENCE if tenant is None else None,
            ),
            summary="Place order with provider",
            **PROVIDER_WRITE,
        )
        self._tenant, self._placed = done.tenant, done.placed
        active = StageRecord(
            stage=OrderStage.ACTIVE, detail=active_detail(done.tenant.domain, done.placed)
        )
        # Provisioned at once: the place step activated it. Else wait for provisioning (a place
        # recorded before the step tried always takes this path: replays unchanged).
        activated = done.activated
        if activated is None:
            self._show(OrderStage.ACTIVATING, activating_detail(done.placed))
            activation = ActivateOrder(
                order=order, tenant=done.tenant, placed=done.placed, record=active
            )
            activated = await self._await_provisioning(
                done.tenant, request.provisioning_escalation, activation
            )
        self._show(active.stage, active.detail)
        if activated is None or not activated.notified:
            await self._notify(
                OrderNoticeKind.ACTIVE, tenant_created=done.tenant.credentials_ref is not None
            )

    async def _step_by_step(self, request: OrderRequest) -> None:
        """The process as workflows started before LEAN_ORDER run it (replayed as it was)."""
        order = self._order
        await workflow.execute_activity_method(
            OrderActivities.record_order, order, summary="Record order", **BOOKKEEPING
        )
        await self._enter(OrderStage.RECEIVED, "Order received and recorded.")
        if order.tenant.mode is TenantMode.CREATE:
            tenant = await self._create_tenant(request)
        else:
            tenant = await self._link_tenant(request)
        if tenant is None:  # expired while waiting for the client
            return
        if self._cancel_reason is not None:
            await self._cancelled()
            return
        self._tenant = tenant
        await self._place_order(tenant)
        await self._activate(tenant, request)

    async def _create_tenant(self, request: OrderRequest) -> TenantRef | None:
        order = self._order
        opening = opening_stage(order)
        await self._enter(opening.stage, opening.detail)
        check = await workflow.execute_activity_method(
            OrderActivities.check_domain, order, summary=f"Check {order.domain}", **PROVIDER_CALL
        )
        if check.known_tenant is not None:
            # Our tenant already (an earlier order created it): this reseller's licenses
            # accumulate on it; another reseller's client must accept that reseller first.
            if check.reseller_accepted or not workflow.patched(TENANT_OWNERSHIP):
                return check.known_tenant
            return await self._join_other_resellers_tenant(request)
        return await self._create_new_tenant(check)

    async def _create_new_tenant(self, check: DomainCheck) -> TenantRef:
        """The domain is not ours: create the tenant if it is free (and record it)."""
        if not check.available:
            raise _Failed(_domain_taken(self._order.domain))
        self._raise_if_cancelled()
        tenant = await workflow.execute_activity_method(
            OrderActivities.create_tenant, self._order, summary="Create tenant", **PROVIDER_WRITE
        )
        if tenant.unrecorded is not None:
            tenant = await self._record_created_tenant(tenant)
        return tenant

    async def _record_created_tenant(self, tenant: TenantRef) -> TenantRef:
        """The tenant exists at the provider but the registry was down: record it (and its
        sealed credentials) as soon as the registry is back; ops see why the order waits."""
        self._alerts.raise_(OpsAttention.CREDENTIALS_UNRECORDED)
        self._set_details(
            f"Tenant **{tenant.domain}** created; waiting for the registry to record it and "
            "its sealed admin credentials."
        )
        recorded = await workflow.execute_activity_method(
            OrderActivities.record_created_tenant,
            args=[self._order, tenant],
            summary="Record created tenant",
            **REGISTRY_WAIT,
        )
        self._alerts.clear(OpsAttention.CREDENTIALS_UNRECORDED)
        return recorded

    async def _join_other_resellers_tenant(self, request: OrderRequest) -> TenantRef | None:
        """The tenant is ours, for other resellers only: invite this reseller's client."""
        if not await self._await_partner_acceptance(request, poll_provider=False):
            return None
        return await workflow.execute_activity_method(
            OrderActivities.link_accepted_tenant,
            self._order,
            summary="Link accepted tenant",
            **PROVIDER_CALL,
        )

    async def _link_tenant(self, request: OrderRequest) -> TenantRef | None:
        order = self._order
        opening = opening_stage(order)
        await self._enter(opening.stage, opening.detail)
        check = await workflow.execute_activity_method(
            OrderActivities.lookup_tenant, order, summary="Look up tenant", **PROVIDER_CALL
        )
        if check.tenant is not None:
            return check.tenant  # already ours: no invitation needed
        if check.other_resellers_tenant is not None:
            return await self._join_other_resellers_tenant(request)
        self._raise_if_cancelled()
        accepted = await self._await_partner_acceptance(request)
        if not accepted:
            return None
        if self._accepted_by_signal:
            # Ops confirmed the acceptance; the provider may lag behind, so retry the lookup.
            return await workflow.execute_activity_method(
                OrderActivities.link_accepted_tenant,
                order,
                summary="Link accepted tenant",
                **PROVIDER_CALL,
            )
        assert self._tenant is not None
        return self._tenant

    async def _await_partner_acceptance(
        self,
        request: OrderRequest,
        *,
        poll_provider: bool = True,
        since: datetime | None = None,
        invited: bool = False,
    ) -> bool:
        """Invite, remind, poll the provider, and give up at the deadline.

        Without `poll_provider` (a tenant already ours through another reseller: the provider
        shows our relationship already) only the confirmed acceptance counts. With `since` (the
        folded steps) the wait began then and is recorded already; `invited`: the invitation is
        sent already."""
        order, policy = self._order, request.acceptance
        self._waiting_since = since or workflow.now()
        self._deadline = policy.deadline(self._waiting_since)
        reminders = policy.reminder_times(self._waiting_since)
        waiting_attributes = [
            sa.ACCEPTANCE_DEADLINE.value_set(self._deadline),
            sa.REMINDER_COUNT.value_set(0),
        ]
        if since is not None:
            self._show(
                OrderStage.AWAITING_PARTNER_ACCEPTANCE, self._waiting_detail(), waiting_attributes
            )
        else:
            await self._enter(OrderStage.AWAITING_PARTNER_ACCEPTANCE, self._waiting_detail())
            workflow.upsert_search_attributes(waiting_attributes)
        if not invited:
            await self._notify(OrderNoticeKind.INVITATION, deadline=self._deadline)

        next_poll = self._waiting_since + policy.poll_interval
        while not self._accepted():
            now = workflow.now()
            upcoming = [self._deadline, next_poll] if poll_provider else [self._deadline]
            if self._reminders_sent < len(reminders):
                upcoming.append(reminders[self._reminders_sent])
            wake_at = min(upcoming)
            if wake_at > now:
                try:
                    await workflow.wait_condition(
                        self._accepted,
                        timeout=wake_at - now,
                        timeout_summary=f"Wait for acceptance until {business_time(wake_at)}",
                    )
                    break
                except TimeoutError:
                    pass
            now = workflow.now()
            if self._reminders_sent < len(reminders) and now >= reminders[self._reminders_sent]:
                self._reminders_sent += 1
                workflow.upsert_search_attributes(
                    [sa.REMINDER_COUNT.value_set(self._reminders_sent)]
                )
                self._set_details(self._waiting_detail())
                await self._notify(
                    OrderNoticeKind.ACCEPTANCE_REMINDER,
                    reminder_number=self._reminders_sent,
                    deadline=self._deadline,
                )
            if poll_provider and (now >= next_poll or now >= self._deadline):
                next_poll = now + policy.poll_interval
                check = await workflow.execute_activity_method(
                    OrderActivities.lookup_tenant,
                    order,
                    summary="Poll partner relationship",
                    **PROVIDER_CALL,
                )
                if check.tenant is not None:
                    self._tenant = check.tenant
                    break
            if workflow.now() >= self._deadline and not self._accepted():
                await self._enter(
                    OrderStage.EXPIRED,
                    f"The client did not accept us as partner by {business_time(self._deadline)}. "
                    "Nothing was ordered.",
                )
                await self._notify(OrderNoticeKind.EXPIRED, deadline=self._deadline)
                return False
        self._raise_if_cancelled()
        return True

    async def _place_order(self, tenant: TenantRef) -> None:
        await self._enter(
            OrderStage.PLACING_ORDER,
            f"Placing {len(self._order.items)} line(s) on tenant **{tenant.domain}**.",
        )
        self._placed = await workflow.execute_activity_method(
            OrderActivities.place_order,
            args=[self._order, tenant],
            summary="Place order with provider",
            **PROVIDER_WRITE,
        )

    async def _activate(self, tenant: TenantRef, request: OrderRequest) -> None:
        assert self._placed is not None
        await self._enter(
            OrderStage.ACTIVATING,
            f"Provider order `{self._placed.provider_order_id}` placed; waiting for "
            f"{len(self._placed.subscription_ids)} subscription(s) to be provisioned.",
        )
        if workflow.patched(PATIENT_PROVISIONING):
            await self._await_provisioning(tenant, request.provisioning_escalation)
        else:
            await workflow.execute_activity_method(
                OrderActivities.await_provisioning,
                args=[tenant, self._placed],
                summary="Wait for provisioning",
                **PROVISIONING_POLL,
            )
        await workflow.execute_activity_method(
            OrderActivities.activate,
            args=[self._order, tenant, self._placed],
            summary="Record active licenses",
            **BOOKKEEPING,
        )
        await self._enter(
            OrderStage.ACTIVE,
            active_detail(tenant.domain, self._placed),
        )
        await self._notify(
            OrderNoticeKind.ACTIVE, tenant_created=tenant.credentials_ref is not None
        )

    async def _await_provisioning(
        self, tenant: TenantRef, escalate_after: timedelta, activation: ActivateOrder | None = None
    ) -> OrderActivated | None:
        """Poll (by activity retries) until provisioned. Placed-but-pending never becomes
        FAILED: past the horizon ops are asked to look, and polling goes on. With `activation`
        (the folded steps) the look-up that finds it provisioned activates the order too."""
        assert self._placed is not None
        activated: OrderActivated | None = None
        escalate_at = workflow.now() + escalate_after
        escalated = False
        while True:
            if not escalated and workflow.now() >= escalate_at:
                escalated = True
                self._alerts.raise_(OpsAttention.PROVISIONING_SLOW)
                self._set_details(
                    f"Provider order `{self._placed.provider_order_id}` placed on "
                    f"{business_time(escalate_at - escalate_after)} is still not provisioned after "
                    f"{escalate_after}; still checking daily. Ops: ask the provider."
                )
            window = PROVISIONING_RECHECK if escalated else escalate_at - workflow.now()
            try:
                if activation is not None or workflow.patched(PROVISIONING_WAKE):
                    activated = await self._provisioning_look_ups(
                        tenant, workflow.now() + window, activation
                    )
                else:
                    await workflow.execute_activity_method(
                        OrderActivities.await_provisioning,
                        args=[tenant, self._placed],
                        summary="Wait for provisioning",
                        start_to_close_timeout=timedelta(seconds=60),
                        schedule_to_close_timeout=max(window, timedelta(minutes=1)),
                        retry_policy=PROVISIONING_RETRY,
                    )
                break
            except ActivityError as err:
                # Out of time (the last attempt's failure is the cause) or a timeout: look
                # again. Anything else: the provider failed it, or refused the look-up.
                timed_out = err.retry_state is RetryState.TIMEOUT
                if not (timed_out or isinstance(err.cause, ActivityTimeout)):
                    raise
            # Retries stop before the window ends when the next backoff would overshoot it.
            if not escalated and workflow.now() < escalate_at:
                await workflow.sleep(
                    escalate_at - workflow.now(),
                    summary=f"Provisioning escalation at {business_time(escalate_at)}",
                )
        if escalated:
            self._alerts.clear(OpsAttention.PROVISIONING_SLOW)
        return activated

    async def _provisioning_look_ups(
        self, tenant: TenantRef, until: datetime, activation: ActivateOrder | None = None
    ) -> OrderActivated | None:
        """The provisioning look-up with its retries until `until`; an order-status event
        (provider_order_changed) cancels the one waiting out its backoff and looks at once."""
        assert self._placed is not None
        while True:
            seen = self._provider_news
            timing: dict[str, Any] = dict(
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=max(until - workflow.now(), timedelta(minutes=1)),
                retry_policy=PROVISIONING_RETRY,
            )
            look_up: workflow.ActivityHandle[Any]
            if activation is not None:
                look_up = workflow.start_activity_method(
                    OrderSteps.provision_and_activate,
                    activation,
                    summary="Activate once provisioned",
                    **timing,
                )
            else:
                look_up = workflow.start_activity_method(
                    OrderActivities.await_provisioning,
                    args=[tenant, self._placed],
                    summary="Wait for provisioning",
                    **timing,
                )
            await workflow.wait_condition(
                lambda h=look_up, n=seen: h.done() or self._provider_news != n  # type: ignore[misc]
            )
            if not look_up.done():
                look_up.cancel()
            try:
                return await look_up
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):
                    raise

    async def _cancelled(self) -> OrderStatus:
        await self._enter(OrderStage.CANCELLED, f"Cancelled before ordering: {self._cancel_reason}")
        await self._notify(OrderNoticeKind.CANCELLED, reason=self._cancel_reason)
        return self.status()

    async def _failed(self, failure: OrderFailure) -> None:
        await self._enter(OrderStage.FAILED, f"Failed ({failure.code.value}): {failure.detail}")
        await self._notify(OrderNoticeKind.FAILED, failure=failure)

    # ------------------------------------------------------------------ signals and query
    @workflow.signal(description="The client accepted us and our distributor as partners.")
    def partner_accepted(self, note: str | None = None) -> None:
        if self._stage in (OrderStage.LINKING_TENANT, OrderStage.AWAITING_PARTNER_ACCEPTANCE):
            self._accepted_by_signal = True
        else:
            workflow.logger.info("partner_accepted ignored at stage %s", self._stage)

    @workflow.signal(
        description="The provider announced a change of the placed order (Ingram's order-status "
        "event): provisioning is looked at now rather than at the next retry."
    )
    def provider_order_changed(self, event: str | None = None) -> None:
        self._provider_news += 1
        workflow.logger.info("provider order event %s at stage %s", event, self._stage)

    @workflow.signal(description="Cancel the order; only before it is placed with the provider.")
    def cancel_order(self, reason: str = "cancelled by ops") -> None:
        if self._stage.cancellable:
            self._cancel_reason = reason or "cancelled by ops"
        else:
            self._cancel_refused = _cancel_refusal(self._order.order_id, self._stage)

    # The same commands as Updates: the validator refuses at once, with the reason and the way
    # out, and nothing is written to history for a refused command.
    @workflow.update(description="Cancel the order; refused once it is placed with the provider.")
    def cancel(self, reason: str) -> OrderStatus:
        self._cancel_reason = reason or "cancelled by ops"
        return self.status()

    @cancel.validator
    def _cancel_allowed(self, reason: str) -> None:
        if self._stage.is_final:
            raise ApplicationError(
                f"order {self._order.order_id} is already {self._stage.value}: nothing to cancel",
                type="OrderFinal",
            )
        if not self._stage.cancellable or self._cancel_reason is not None:
            raise ApplicationError(_cancel_refusal(self._order.order_id, self._stage))

    @workflow.update(
        description="The client accepted us and our distributor as partners (confirmed by ops); "
        "refused when the order is not waiting for it."
    )
    def accept_partner(self, note: str | None = None) -> OrderStatus:
        self._accepted_by_signal = True
        return self.status()

    @accept_partner.validator
    def _acceptance_expected(self, note: str | None = None) -> None:
        if self._stage not in (OrderStage.LINKING_TENANT, OrderStage.AWAITING_PARTNER_ACCEPTANCE):
            raise ApplicationError(
                f"order {self._order.order_id} is at stage {self._stage.value}: it is not "
                "waiting for the client's partner acceptance; nothing to confirm",
                type="NotAwaitingAcceptance",
            )

    @workflow.query(description="Where the order stands.")
    def status(self) -> OrderStatus:
        return OrderStatus(
            order_id=self._order.order_id,
            stage=self._stage,
            domain=self._order.domain,
            reseller_id=self._order.reseller.id,
            tenant_id=self._tenant.tenant_id if self._tenant else None,
            waiting_since=self._waiting_since,
            acceptance_deadline=self._deadline,
            reminders_sent=self._reminders_sent,
            provider_order_id=self._placed.provider_order_id if self._placed else None,
            subscription_ids=self._placed.subscription_ids if self._placed else [],
            detail=self._detail,
            cancel_reason=self._cancel_reason,
            cancel_refused=self._cancel_refused,
        )

    # ------------------------------------------------------------------ helpers
    def _accepted(self) -> bool:
        return self._accepted_by_signal or self._cancel_reason is not None

    def _raise_if_cancelled(self) -> None:
        if self._cancel_reason is not None:
            raise _Cancelled()

    def _waiting_detail(self) -> str:
        assert self._waiting_since is not None and self._deadline is not None
        return _waiting_detail(
            self._order.domain, self._waiting_since, self._deadline, self._reminders_sent
        )

    def _show(
        self, stage: OrderStage, detail: str, attributes: Sequence[SearchAttributeUpdate] = ()
    ) -> None:
        """The stage for ops (search attribute, current details); the registry hears of it from
        the step that runs next (StageRecord)."""
        self._stage = stage
        workflow.upsert_search_attributes([sa.ORDER_STAGE.value_set(stage.value), *attributes])
        self._set_details(detail)

    async def _enter(self, stage: OrderStage, detail: str) -> None:
        """The stage for ops and, at once, for the registry (its own local activity)."""
        self._stage = stage
        workflow.upsert_search_attributes([sa.ORDER_STAGE.value_set(stage.value)])
        self._set_details(detail)
        await workflow.execute_local_activity_method(
            OrderActivities.record_stage,
            args=[self._order.order_id, stage, detail],
            **BOOKKEEPING,
        )

    def _set_details(self, detail: str) -> None:
        self._detail = detail
        parts = [
            f"**{self._stage.value}** · order `{self._order.order_id}` · "
            f"reseller `{self._order.reseller.id}`",
            detail,
        ]
        if self._alerts.raised:
            parts.append(self._alerts.markdown())
        if self._notices.undeliverable:
            parts.append("Undeliverable e-mails: " + ", ".join(self._notices.undeliverable))
        workflow.set_current_details("\n\n".join(parts))

    def _refresh_details(self) -> None:
        self._set_details(self._detail)

    async def _notify(self, kind: OrderNoticeKind, **fields: object) -> None:
        notice = OrderNotice(kind=kind, order=self._order, **fields)  # type: ignore[arg-type]
        await self._notices.send(
            OrderActivities.notify, notice, key=notice.key, summary=f"E-mail reseller: {kind.value}"
        )


class _Expired(Exception):
    """Internal: the client did not accept us in time (EXPIRED is entered and told already)."""


class _Cancelled(Exception):
    """Internal: unwinds the process when a cancel_order signal was taken."""


class _Failed(Exception):
    """Internal: a business refusal decided by the workflow itself."""

    def __init__(self, failure: OrderFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


def _cancel_refusal(order_id: str, stage: OrderStage) -> str:
    return (
        f"order {order_id} is at stage {stage.value}: it is already placed with the provider "
        "and can no longer be cancelled as an order; cancel its subscriptions within 168 h of "
        "the purchase instead (New Commerce rules)"
    )


def _domain_taken(domain: str) -> OrderFailure:
    return OrderFailure(
        code=FailureCode.DOMAIN_TAKEN,
        domain=domain,
        detail=f"the domain {domain} is already taken at the provider",
    )


def _waiting_detail(domain: str, since: datetime, deadline: datetime, reminders_sent: int) -> str:
    return (
        f"Waiting since {business_time(since)} for the client's Global Admin "
        f"to accept us and Ingram Micro as partners on **{domain}**. "
        f"Reminders sent: {reminders_sent}. Expires {business_time(deadline)}."
    )


def _failure(err: ActivityError, domain: str) -> OrderFailure:
    """What an activity's final failure means for the order (codes per error type)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return OrderFailure.from_error(cause.type, cause.message, domain=domain)
    return OrderFailure.from_error(None, str(cause or err), domain=domain)
