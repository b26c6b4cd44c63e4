"""Adopting what already exists: the provider's subscriptions on our tenants that no
SubscriptionWorkflow manages yet (bought before this system, or activated before the release
that brought the workflow), taken over with their real purchase dates.

Values the adoption workflow carries, and the pure rules that decide, per provider subscription,
whether it is adopted and with what. Plain pydantic; no Temporal import.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from csp_core.orders.models import BillingCycle, Term
from csp_core.providers.port import ProviderSubscription
from csp_core.providers.port import SubscriptionStatus as ProviderStatus
from csp_core.subscriptions.values import SubscriptionStart
from csp_core.subscriptions.windows import change_window_end


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


def adoption_workflow_id(domain: str) -> str:
    """One adoption per tenant at a time: a second one joins the one running."""
    return f"adopt-{domain}"


def product_sku(offer_id: str) -> str:
    """PRODUCT:SKU of a catalog item id (the provider may add the availability segment)."""
    return ":".join(offer_id.split(":")[:2])


class AdoptionRequest(_Model):
    domain: str
    # Unit prices (MXN) by PRODUCT:SKU for subscriptions this system never sold: the provider's
    # subscription carries no price, and the renewal charges need one.
    prices: dict[str, Decimal] = Field(default_factory=dict)


class PriceSource(StrEnum):
    GIVEN = "given"  # --price on the command
    TENANT = "tenant"  # as last sold on this tenant
    CATALOG = "catalog"  # as last sold on any tenant
    RECORDED = "recorded"  # the registry already holds the subscription with its price


class UnitPrice(_Model):
    amount: Decimal
    source: PriceSource
    # Where a price from an earlier sale comes from (the order that sold it, or its tenant).
    seen_in: str | None = None

    def describe(self) -> str:
        match self.source:
            case PriceSource.GIVEN:
                return "as given"
            case PriceSource.RECORDED:
                return "as recorded"
            case _:
                return f"as last sold ({self.seen_in})" if self.seen_in else "as last sold"


class Skipped(_Model):
    subscription_id: str
    reason: str


class Candidate(_Model):
    """A live subscription to take over, and where its price came from."""

    start: SubscriptionStart
    price: UnitPrice
    recorded_now: bool  # this adoption recorded it in the registry


class AdoptionPlan(_Model):
    domain: str
    candidates: list[Candidate] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)


class TakeOverResult(StrEnum):
    ADOPTED = "adopted"  # a SubscriptionWorkflow was started for it now
    MANAGED = "managed"  # its workflow was already running
    ENDED = "ended"  # its workflow has completed: cancelled or expired, nothing to manage


class Adopted(_Model):
    subscription_id: str
    product_name: str
    sku: str
    seats: int
    purchased_at: datetime
    cancellable_until: datetime
    term_ends_at: datetime
    auto_renew: bool
    unit_price: Decimal
    price_source: str


class AdoptionReport(_Model):
    domain: str
    adopted: list[Adopted] = Field(default_factory=list)
    already_managed: list[str] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.domain}: {len(self.adopted)} adopted, {len(self.already_managed)} already "
            f"managed, {len(self.skipped)} skipped"
        )


def adopted(candidate: Candidate) -> Adopted:
    start = candidate.start
    return Adopted(
        subscription_id=start.subscription_id,
        product_name=start.product_name,
        sku=start.sku,
        seats=start.seats,
        purchased_at=start.purchased_at,
        cancellable_until=change_window_end(start.purchased_at),
        term_ends_at=start.term_end,
        auto_renew=start.auto_renew,
        unit_price=start.unit_price,
        price_source=candidate.price.describe(),
    )


def adoption_report(plan: AdoptionPlan, results: list[TakeOverResult]) -> AdoptionReport:
    """What adoption did with each candidate (results in the candidates' order), and why the
    others were skipped."""
    outcomes = list(zip(plan.candidates, results, strict=True))
    ended = [
        Skipped(
            subscription_id=c.start.subscription_id,
            reason="its workflow has completed (cancelled or expired): nothing left to manage",
        )
        for c, result in outcomes
        if result == TakeOverResult.ENDED
    ]
    return AdoptionReport(
        domain=plan.domain,
        adopted=[adopted(c) for c, result in outcomes if result == TakeOverResult.ADOPTED],
        already_managed=[
            c.start.subscription_id for c, result in outcomes if result == TakeOverResult.MANAGED
        ],
        skipped=[*plan.skipped, *ended],
    )


# ------------------------------------------------------------------ rules
def not_live(sub: ProviderSubscription) -> str | None:
    """Why a provider subscription is not taken over, by its provider status (None: it is)."""
    match sub.status:
        case ProviderStatus.ACTIVE:
            return None
        case ProviderStatus.SUSPENDED:
            return (
                "suspended at the provider: a SubscriptionWorkflow takes over active ones only; "
                "once the pending renewal is paid and it is reactivated, adopt again"
            )
        case ProviderStatus.PENDING:
            return "still provisioning at the provider: adopt again once it is active"
        case ProviderStatus.DELETED:
            return "cancelled at the provider: nothing left to manage"
        case ProviderStatus.EXPIRED:
            return "expired at the provider: nothing left to manage"
        case _:
            return f"{sub.status.value} at the provider: only active subscriptions are adopted"


def purchase_dates(sub: ProviderSubscription) -> tuple[datetime, datetime] | None:
    """(start of the current term, first activation) as the provider dates them: the window runs
    from the first; the registry's activated_at (which decides renewal charges) is the second."""
    term_start = sub.effective_start_date or sub.creation_date
    if term_start is None:
        return None
    return term_start, sub.creation_date or term_start


def term_and_cycle(sub: ProviderSubscription) -> tuple[Term, BillingCycle] | str:
    """The subscription's term and billing cycle, or why they are not ones we sell."""
    try:
        term = Term(sub.term_duration or "")
    except ValueError:
        return f"term {sub.term_duration or 'unknown'} is not one this system sells (P1M, P1Y, P3Y)"
    try:
        cycle = BillingCycle(sub.billing_cycle or "")
    except ValueError:
        return f"billing cycle {sub.billing_cycle or 'unknown'} is not monthly or annual"
    return term, cycle


def unknown_price(sku: str, domain: str) -> str:
    return (
        f"no unit price known for {sku}: this system never sold it, and the renewal charges "
        f"need one. Give it: csp subscriptions adopt --domain {domain} --price {sku}=<MXN>"
    )


def unknown_tenant(domain: str) -> str:
    return (
        f"tenant {domain} is not one the registry knows, so there is no reseller to adopt its "
        "subscriptions for. Way out: link it with an order first (`csp order submit "
        f'<order.json>` with tenant mode "link" and domain {domain}), then adopt again'
    )
