"""Activities of the adoption workflow: read a tenant's subscriptions at the provider (the
credentials live on the worker), record the ones the registry does not know, and start a
SubscriptionWorkflow for each live one. Both are idempotent: adopting twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.common import in_thread, provider_failure, start_subscription_workflow
from csp_core.providers.port import Provider, ProviderError, ProviderSubscription
from csp_core.registry import (
    AdoptedSubscription,
    Registry,
    SubscriptionRecord,
    SubscriptionStatus,
    TenantRecord,
)
from csp_core.subscriptions.adoption import (
    AdoptionPlan,
    AdoptionRequest,
    Candidate,
    PriceSource,
    Skipped,
    TakeOverResult,
    UnitPrice,
    not_live,
    product_sku,
    purchase_dates,
    term_and_cycle,
    unknown_price,
    unknown_tenant,
)
from csp_core.subscriptions.values import SubscriptionStart, subscription_workflow_id, term_end

log = structlog.get_logger(__name__)

# ApplicationError.type when the tenant is not one the registry knows (the caller is told how
# to bring it in; retrying would not help).
UNKNOWN_TENANT = "UnknownTenant"


@dataclass(frozen=True)
class _Reseller:
    id: str
    name: str
    email: str


@dataclass
class AdoptionActivities:
    provider: Provider
    registry: Registry
    # Starts the SubscriptionWorkflows, on this task queue.
    client: Client
    task_queue: str
    # Where a reseller's e-mails go when no order of theirs on the tenant names a contact.
    ops_email: str

    @activity.defn
    async def survey_tenant(self, request: AdoptionRequest) -> AdoptionPlan:
        """The tenant's subscriptions at the provider, each either a candidate to take over
        (recorded in the registry first, with the provider's dates) or skipped with why."""
        tenant = await in_thread(self.registry.get_tenant, request.domain)
        if tenant is None:
            raise ApplicationError(unknown_tenant(request.domain), type=UNKNOWN_TENANT)
        try:
            found = await self.provider.list_subscriptions(tenant.tenant_id)
        except ProviderError as err:
            raise provider_failure(err, f"listing the subscriptions of {tenant.domain}") from err
        candidates: list[Candidate] = []
        skipped: list[Skipped] = []
        for sub in sorted(found, key=lambda s: s.subscription_id):
            outcome = await self._candidate(tenant, sub, request)
            if isinstance(outcome, Candidate):
                candidates.append(outcome)
            else:
                skipped.append(Skipped(subscription_id=sub.subscription_id, reason=outcome))
        log.info(
            "adoption_surveyed",
            domain=tenant.domain,
            candidates=len(candidates),
            skipped=len(skipped),
        )
        return AdoptionPlan(domain=tenant.domain, candidates=candidates, skipped=skipped)

    @activity.defn
    async def take_over(self, start: SubscriptionStart) -> TakeOverResult:
        """Start the subscription's workflow unless one runs already. A workflow that has
        completed (cancelled, expired) is not started again; one that failed or was terminated
        is (ALLOW_DUPLICATE_FAILED_ONLY)."""
        handle = self.client.get_workflow_handle(subscription_workflow_id(start.subscription_id))
        try:
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.RUNNING:
                return TakeOverResult.MANAGED
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        try:
            await start_subscription_workflow(
                self.client,
                self.task_queue,
                start,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except WorkflowAlreadyStartedError:
            return TakeOverResult.ENDED
        log.info("subscription_adopted", subscription_id=start.subscription_id)
        return TakeOverResult.ADOPTED

    # ------------------------------------------------------------------ deciding
    async def _candidate(
        self, tenant: TenantRecord, sub: ProviderSubscription, request: AdoptionRequest
    ) -> Candidate | str:
        if (why := not_live(sub)) is not None:
            return why
        if sub.quantity < 1:
            return f"the provider shows {sub.quantity} seats on an active subscription"
        dates = purchase_dates(sub)
        if dates is None:
            return "the provider gives no purchase date, so its 168 h window cannot be known"
        term_started_at, activated_at = dates
        known = await in_thread(self.registry.get_subscription, sub.subscription_id)
        if known is not None and (why := _recorded_not_adoptable(known, tenant)) is not None:
            return why
        if known is None:
            shape = term_and_cycle(sub)
            if isinstance(shape, str):
                return shape
            term, cycle = shape
            sku = product_sku(sub.offer_id)
            price = await self._price(sku, tenant.domain, request)
            if price is None:
                return unknown_price(sku, tenant.domain)
            product = sub.offer_name or sku
        else:
            term, cycle = known.term, known.billing_cycle
            sku, product = known.sku, known.product_name
            price = UnitPrice(amount=known.unit_price, source=PriceSource.RECORDED)
        ends_at = sub.commitment_end_date or term_end(term_started_at, term)
        record, recorded_now = await in_thread(
            self.registry.adopt_subscription,
            tenant.domain,
            AdoptedSubscription(
                subscription_id=sub.subscription_id,
                sku=sku,
                product_name=product,
                quantity=sub.quantity,
                term=term,
                billing_cycle=cycle,
                unit_price=price.amount,
                activated_at=activated_at,
                term_started_at=term_started_at,
                term_ends_at=ends_at,
                auto_renew=sub.auto_renew_enabled,
            ),
        )
        reseller = await self._reseller(tenant, record)
        start = SubscriptionStart(
            subscription_id=sub.subscription_id,
            tenant_id=tenant.tenant_id,
            domain=tenant.domain,
            reseller_id=reseller.id,
            reseller_name=reseller.name,
            reseller_email=reseller.email,
            company_name=tenant.company_name,
            order_id=record.order_id,
            sku=record.sku,
            product_name=record.product_name,
            seats=sub.quantity,
            term=record.term,
            billing_cycle=record.billing_cycle,
            unit_price=record.unit_price,
            # The window runs from the current term's start as the provider dates it: a
            # subscription bought 10 days ago is outside its window from the start.
            purchased_at=term_started_at,
            term_end=ends_at,
            auto_renew=sub.auto_renew_enabled,
        )
        return Candidate(start=start, price=price, recorded_now=recorded_now)

    async def _price(self, sku: str, domain: str, request: AdoptionRequest) -> UnitPrice | None:
        """The given price, else the one it was last sold at on this tenant, else anywhere."""
        if sku in request.prices:
            return UnitPrice(amount=request.prices[sku], source=PriceSource.GIVEN)
        for scope, source in ((domain, PriceSource.TENANT), (None, PriceSource.CATALOG)):
            sold = await in_thread(self.registry.last_sold_price, sku, scope)
            if sold is not None:
                seen = f"order {sold.order_id}" if sold.order_id else sold.subscription_id
                return UnitPrice(
                    amount=sold.unit_price,
                    source=source,
                    seen_in=f"{seen} on {sold.tenant_domain}",
                )
        return None

    async def _reseller(self, tenant: TenantRecord, record: SubscriptionRecord) -> _Reseller:
        """Whom the subscription's e-mails go to: the reseller of the order that bought it;
        for one no order of ours bought, the tenant's reseller with the contact its latest
        order on the tenant gave (ops, when none did)."""
        order = None
        if record.order_id is not None:
            order = await in_thread(self.registry.get_order, record.order_id)
        if order is None:
            order = await in_thread(
                self.registry.latest_order_for, tenant.domain, tenant.reseller_id
            )
        if order is None:
            return _Reseller(tenant.reseller_id, tenant.reseller_id, self.ops_email)
        return _Reseller(
            order.reseller_id,
            order.reseller_name or order.reseller_id,
            order.reseller_email or self.ops_email,
        )


def _recorded_not_adoptable(known: SubscriptionRecord, tenant: TenantRecord) -> str | None:
    if known.tenant_domain != tenant.domain:
        return (
            f"recorded on another tenant ({known.tenant_domain}): a license never leaves its "
            "tenant; ops should check the registry"
        )
    if known.status is SubscriptionStatus.PENDING:
        return f"its order {known.order_id} is still activating it; that order starts its workflow"
    if known.status in (SubscriptionStatus.CANCELLED, SubscriptionStatus.EXPIRED):
        return (
            f"recorded as {known.status.value} while the provider shows it active: ops should "
            "check it before anything is adopted"
        )
    return None
