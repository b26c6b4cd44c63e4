"""Activities of the order workflow, as a class holding its injected clients (provider,
registry, vault, mailer) so tests swap the clients, not the activities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.common import (
    in_thread,
    provider_failure,
    request_id,
    send_once,
    start_subscription_workflow,
)
from activities.order_mapping import item_of, new_customer, tenant_ref
from activities.order_notices import render_order_notice
from csp_core.notifications.mailer import Mailer
from csp_core.orders.models import Order
from csp_core.orders.provisioning import (
    DomainCheck,
    LinkCheck,
    OrderNotice,
    PlacedSubscriptions,
    SealedCredentials,
    TenantOrigin,
    TenantRef,
)
from csp_core.providers.port import (
    PERMANENT_CONFLICTS,
    OrderLine,
    Provider,
    ProviderError,
    ProviderSubscription,
    ProvisioningState,
)
from csp_core.registry import (
    REGISTRY_OUTAGES,
    NewSubscription,
    OrderConflict,
    Registry,
    TenantConflict,
    TenantRecord,
)
from csp_core.secrets import SecretVault
from csp_core.stages import OrderStage
from csp_core.subscriptions.values import SubscriptionStart, term_end
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass
class OrderActivities:
    provider: Provider
    registry: Registry
    vault: SecretVault
    mailer: Mailer
    # Starts one SubscriptionWorkflow per activated license, on this task queue.
    client: Client
    task_queue: str
    ops_email: str
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE

    # ------------------------------------------------------------------ bookkeeping
    @activity.defn
    async def record_order(self, order: Order) -> None:
        await self._record_order(order)

    async def _record_order(
        self, order: Order, stage: OrderStage = OrderStage.RECEIVED, detail: str | None = None
    ) -> None:
        try:
            await in_thread(
                self.registry.record_order,
                order.order_id,
                order.fingerprint(),
                order.reseller.id,
                order.domain,
                order.tenant.mode.value,
                order.reseller.name,
                str(order.reseller.email),
                stage,
                detail,
            )
        except OrderConflict as err:
            raise ApplicationError(str(err), type="OrderConflict", non_retryable=True) from err

    @activity.defn
    async def record_stage(self, order_id: str, stage: OrderStage, detail: str) -> None:
        await in_thread(self.registry.set_order_stage, order_id, stage.value, detail)

    # ------------------------------------------------------------------ tenant
    @activity.defn
    async def check_domain(self, order: Order) -> DomainCheck:
        known = await in_thread(self.registry.get_tenant, order.domain)
        if known is not None:
            owners = await in_thread(self.registry.tenant_resellers, order.domain)
            return DomainCheck(
                known_tenant=tenant_ref(known), reseller_accepted=order.reseller.id in owners
            )
        try:
            available = await self.provider.domain_available(order.domain)
        except ProviderError as err:
            raise provider_failure(err, f"checking {order.domain}") from err
        return DomainCheck(available=available)

    @activity.defn
    async def create_tenant(self, order: Order) -> TenantRef:
        """Create the customer tenant and vault its admin credentials in the same step.

        The password never leaves this activity in clear: it is sealed by the vault at once. If
        the registry cannot take it right after the provider created the tenant, the sealed
        credentials go back to the workflow, which records them once the registry is back
        (`record_created_tenant`), so neither the tenant nor its password is ever lost.
        """
        try:
            created = await self.provider.create_customer(
                new_customer(order), request_id=request_id("create-customer")
            )
        except ProviderError as err:
            if err.code in PERMANENT_CONFLICTS and activity.info().attempt > 1:
                # An earlier attempt may have created it and lost the answer (and the provider
                # no longer replays it): find the tenant by its domain instead of failing.
                reconciled = await self._reconcile_created_tenant(order)
                if reconciled is not None:
                    return reconciled
            raise provider_failure(err, f"creating tenant {order.domain}") from err
        if created.admin_password is None:
            # The provider creates the tenant with the first order and hands the admin
            # credentials to the client itself (Ingram): nothing to vault, nothing to reveal.
            recorded = await self._record_tenant(order, created.tenant_id, TenantOrigin.CREATED)
            return tenant_ref(recorded)
        sealed = SealedCredentials(
            admin_username=created.admin_username,
            password_ciphertext=self.vault.encrypt(created.admin_password),
        )
        tenant = TenantRef(
            domain=created.domain,
            tenant_id=created.tenant_id,
            origin=TenantOrigin.CREATED,
            unrecorded=sealed,
        )
        try:
            recorded = await self._record_created(order, tenant)
        except REGISTRY_OUTAGES as err:
            log.warning(
                "tenant_created_registry_unavailable",
                order_id=order.order_id,
                domain=created.domain,
                error=type(err).__name__,
            )
            return tenant
        log.info("tenant_created", order_id=order.order_id, domain=recorded.domain)
        return recorded

    @activity.defn
    async def record_created_tenant(self, order: Order, tenant: TenantRef) -> TenantRef:
        """Record a tenant created while the registry was down, with its sealed credentials."""
        return await self._record_created(order, tenant)

    async def _record_created(self, order: Order, tenant: TenantRef) -> TenantRef:
        sealed = tenant.unrecorded
        if sealed is None:
            raise ApplicationError("no sealed credentials to record", non_retryable=True)
        ref = await in_thread(
            self.registry.store_sealed_credentials,
            order.order_id,
            tenant.domain,
            sealed.admin_username,
            sealed.password_ciphertext,
        )
        recorded = await self._record_tenant(order, tenant.tenant_id, TenantOrigin.CREATED)
        return tenant_ref(recorded, credentials_ref=ref)

    async def _reconcile_created_tenant(self, order: Order) -> TenantRef | None:
        try:
            customer = await self.provider.find_customer_by_domain(order.domain)
        except ProviderError as err:
            raise provider_failure(err, f"looking up {order.domain}") from err
        if customer is None or not customer.has_reseller_relationship:
            return None  # someone else's tenant: the domain is really taken
        tenant = await self._record_tenant(order, customer.tenant_id, TenantOrigin.CREATED)
        # Its generated password was in the lost answer: the client resets it from the admin
        # center (the ACTIVE e-mail then says nothing about revealing credentials).
        log.warning("tenant_reconciled_without_credentials", order_id=order.order_id)
        return tenant_ref(tenant)

    @activity.defn
    async def lookup_tenant(self, order: Order) -> LinkCheck:
        """Is the client's tenant ours already, or has the client accepted us as partner?"""
        known = await in_thread(self.registry.get_tenant, order.domain)
        if known is not None:
            owners = await in_thread(self.registry.tenant_resellers, order.domain)
            if order.reseller.id not in owners:
                return LinkCheck(other_resellers_tenant=tenant_ref(known), visible_at_provider=True)
            return LinkCheck(tenant=tenant_ref(known), visible_at_provider=True)
        try:
            customer = await self.provider.find_customer_by_domain(order.domain)
        except ProviderError as err:
            raise provider_failure(err, f"looking up {order.domain}") from err
        if customer is None or not customer.has_reseller_relationship:
            return LinkCheck(visible_at_provider=customer is not None)
        tenant = await self._record_tenant(order, customer.tenant_id, TenantOrigin.LINKED)
        return LinkCheck(tenant=tenant_ref(tenant), visible_at_provider=True)

    @activity.defn
    async def link_accepted_tenant(self, order: Order) -> TenantRef:
        """The client accepted this order's reseller: bind the tenant once the provider shows it,
        and record that the reseller may now transact on it."""
        known = await in_thread(self.registry.get_tenant, order.domain)
        if known is not None:
            await in_thread(
                self.registry.add_tenant_reseller, order.domain, order.reseller.id, "accepted"
            )
            return tenant_ref(known)
        try:
            customer = await self.provider.find_customer_by_domain(order.domain)
        except ProviderError as err:
            raise provider_failure(err, f"looking up {order.domain}") from err
        if customer is None:
            # Eventual consistency: retried by the activity's policy until the provider shows it.
            raise ApplicationError(
                f"tenant {order.domain} is not visible at the provider yet", type="NotYetVisible"
            )
        tenant = await self._record_tenant(order, customer.tenant_id, TenantOrigin.LINKED)
        return tenant_ref(tenant)

    # ------------------------------------------------------------------ order
    @activity.defn
    async def place_order(self, order: Order, tenant: TenantRef) -> PlacedSubscriptions:
        placed = await self._place(order, tenant)
        await in_thread(
            self.registry.set_order_stage,
            order.order_id,
            OrderStage.PLACING_ORDER.value,
            None,
            placed.provider_order_id,
        )
        return placed

    async def _place(self, order: Order, tenant: TenantRef) -> PlacedSubscriptions:
        """Place the order (its stable request id makes a retry find the same order) and record
        its subscriptions."""
        lines = [
            OrderLine(
                line_number=i,
                offer_id=item.sku,
                quantity=item.quantity,
                term_duration=item.term.value,
                billing_cycle=item.billing_cycle.value,
                friendly_name=item.product_name,
            )
            for i, item in enumerate(order.items)
        ]
        try:
            placed = await self.provider.place_order(
                tenant.tenant_id,
                lines,
                request_id=request_id("place-order"),
                new_tenant=new_customer(order) if tenant.origin is TenantOrigin.CREATED else None,
            )
        except ProviderError as err:
            raise provider_failure(err, f"placing order on {tenant.domain}") from err
        new = []
        for sub in placed.subscriptions:
            item = item_of(order, sub.offer_id)
            if item is None:
                # Retried as before (a provider answer we cannot place is not the client's fault).
                raise ApplicationError(
                    f"the provider answered offer {sub.offer_id}, which the order does not name"
                )
            new.append(
                NewSubscription(
                    subscription_id=sub.subscription_id,
                    sku=item.sku,
                    product_name=item.product_name,
                    quantity=sub.quantity,
                    term=item.term.value,
                    billing_cycle=item.billing_cycle.value,
                    unit_price=item.unit_price,
                )
            )
        await in_thread(self.registry.record_subscriptions, order.order_id, tenant.domain, new)
        return PlacedSubscriptions(
            provider_order_id=placed.order_id,
            subscription_ids=[s.subscription_id for s in placed.subscriptions],
        )

    @activity.defn
    async def await_provisioning(self, tenant: TenantRef, placed: PlacedSubscriptions) -> None:
        """One look at provisioning; 'pending' fails the attempt so the retry policy polls."""
        pending: list[str] = []
        for subscription_id in placed.subscription_ids:
            try:
                state = await self.provider.subscription_provisioning(
                    tenant.tenant_id, subscription_id
                )
            except ProviderError as err:
                raise provider_failure(err, f"provisioning status of {subscription_id}") from err
            if state is ProvisioningState.FAILED:
                raise ApplicationError(
                    f"the provider failed to provision subscription {subscription_id}",
                    type="ProvisioningFailed",
                    non_retryable=True,
                )
            if state is ProvisioningState.PENDING:
                pending.append(subscription_id)
        if pending:
            raise ApplicationError(
                f"{len(pending)} subscription(s) still provisioning", type="ProvisioningPending"
            )

    @activity.defn
    async def activate(self, order: Order, tenant: TenantRef, placed: PlacedSubscriptions) -> None:
        await self._activate(order, tenant, placed, record_terms=False)

    async def _activate(
        self, order: Order, tenant: TenantRef, placed: PlacedSubscriptions, *, record_terms: bool
    ) -> None:
        """Each license active in the registry, and its SubscriptionWorkflow started. With
        `record_terms` its first term, seats and auto-renew are recorded in the same write, so
        the workflow starts without a registry round trip of its own."""
        activated_at = activity.info().current_attempt_scheduled_time
        for subscription_id in placed.subscription_ids:
            try:
                provider_view = await self.provider.get_subscription(
                    tenant.tenant_id, subscription_id
                )
            except ProviderError as err:
                raise provider_failure(err, f"reading subscription {subscription_id}") from err
            # The window runs from the purchase as the provider dates it (it is the one that
            # refuses), not from our activation, which can come hours after provisioning.
            purchased_at = provider_view.effective_start_date or activated_at
            if record_terms:
                ends = provider_view.commitment_end_date or term_end(
                    purchased_at, await self._term_of(order, provider_view)
                )
                record = await in_thread(
                    self.registry.record_activation,
                    subscription_id,
                    activated_at,
                    seats=provider_view.quantity,
                    auto_renew=provider_view.auto_renew_enabled,
                    term_started_at=purchased_at,
                    term_ends_at=ends,
                )
            else:
                record = await in_thread(
                    self.registry.set_subscription_status, subscription_id, "active", activated_at
                )
            start = SubscriptionStart(
                subscription_id=subscription_id,
                tenant_id=tenant.tenant_id,
                domain=tenant.domain,
                reseller_id=order.reseller.id,
                reseller_name=order.reseller.name,
                reseller_email=str(order.reseller.email),
                company_name=order.customer.company_name,
                order_id=order.order_id,
                sku=record.sku,
                product_name=record.product_name,
                seats=provider_view.quantity,
                term=record.term,
                billing_cycle=record.billing_cycle,
                unit_price=record.unit_price,
                purchased_at=purchased_at,
                term_end=provider_view.commitment_end_date or term_end(purchased_at, record.term),
                auto_renew=provider_view.auto_renew_enabled,
                term_recorded=record_terms,
            )
            await self._start_subscription_workflow(start)

    async def _term_of(self, order: Order, sub: ProviderSubscription) -> str:
        """The license's term: its order line's (no registry read), else as recorded."""
        item = item_of(order, sub.offer_id)
        if item is not None:
            return item.term.value
        recorded = await in_thread(self.registry.get_subscription, sub.subscription_id)
        if recorded is None:
            raise ApplicationError(
                f"subscription {sub.subscription_id} is not recorded", non_retryable=True
            )
        return recorded.term

    async def _start_subscription_workflow(self, start: SubscriptionStart) -> None:
        """Start it once: a retry of this activity finds it running and leaves it."""
        await start_subscription_workflow(self.client, self.task_queue, start)

    # ------------------------------------------------------------------ e-mail
    @activity.defn
    async def notify(self, notice: OrderNotice) -> None:
        email = await render_order_notice(
            notice,
            relationship_url=self._relationship_url,
            business_timezone=self.business_timezone,
            ops_email=self.ops_email,
        )
        sent = await send_once(self.registry, self.mailer, email, order_id=notice.order.order_id)
        if not sent:
            log.info("notification_already_sent", key=email.key)

    async def _relationship_url(self) -> str:
        try:
            return await self.provider.relationship_request_link()
        except ProviderError as err:
            raise provider_failure(err, "getting the reseller relationship link") from err

    # ------------------------------------------------------------------ helpers
    async def _record_tenant(
        self, order: Order, tenant_id: str, origin: TenantOrigin
    ) -> TenantRecord:
        try:
            return await in_thread(
                self.registry.record_tenant,
                order.domain,
                tenant_id,
                order.customer.company_name,
                order.reseller.id,
                origin.value,
            )
        except TenantConflict as err:
            raise ApplicationError(str(err), type="TenantConflict", non_retryable=True) from err
