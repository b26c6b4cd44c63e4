"""Values the subscription workflow carries: its input, the changes it asks the provider for,
and what it reports. Plain pydantic; no Temporal import."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from csp_core.orders.models import BillingCycle, Term
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.windows import change_window_end


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


def subscription_workflow_id(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


class SubscriptionStart(_Model):
    """The workflow input: one license as it was when it became active."""

    subscription_id: str
    tenant_id: str
    domain: str
    reseller_id: str
    reseller_name: str
    reseller_email: str
    company_name: str
    order_id: str | None = None
    sku: str
    product_name: str
    seats: int
    term: Term
    billing_cycle: BillingCycle
    unit_price: Decimal
    # Start of the current term (the purchase, as the provider dates it): the 168 h window
    # is measured from here.
    purchased_at: datetime
    term_end: datetime
    auto_renew: bool = True

    @property
    def cancellable_until(self) -> datetime:
        return change_window_end(self.purchased_at)

    @property
    def term_ends_on(self) -> str:
        return term_ends_on(self.term_end)


class SubscriptionRef(_Model):
    """What an activity needs to address the subscription at the provider and in the registry."""

    subscription_id: str
    tenant_id: str
    domain: str


class SeatsChanged(_Model):
    """The provider's answer to a seat change (the total now, not a delta)."""

    seats: int


class CancelNotice(_Model):
    """The reseller is told that a subscription was cancelled inside its window."""

    subscription: SubscriptionStart
    cancelled_at: datetime
    seats: int

    @property
    def key(self) -> str:
        return f"subscription-{self.subscription.subscription_id}:cancelled"


class SubscriptionDetails(_Model):
    """Where a subscription stands (the `details` query)."""

    subscription_id: str
    domain: str
    reseller_id: str
    product_name: str
    sku: str
    status: SubscriptionStatus
    seats: int
    term: Term
    billing_cycle: BillingCycle
    unit_price: Decimal
    auto_renew: bool
    term_started_at: datetime
    cancellable_until: datetime
    term_ends_at: datetime
    cancelled_at: datetime | None = None


def term_ends_on(term_end: datetime) -> str:
    """The term's last day as Partner Center dates it (commitmentEndDate, a UTC date)."""
    return term_end.astimezone(UTC).date().isoformat()


TERM_MONTHS = {Term.P1M: 1, Term.P1Y: 12, Term.P3Y: 36}


def term_end(start: datetime, term: Term) -> datetime:
    """The term's last instant as Partner Center dates it (commitmentEndDate: the day before the
    monthly anniversary, at midnight UTC), for when the provider does not say."""
    months = start.month - 1 + TERM_MONTHS[term]
    year, month = start.year + months // 12, months % 12 + 1
    day = min(start.day, monthrange(year, month)[1])
    end = start.replace(year=year, month=month, day=day) - timedelta(days=1)
    return end.replace(hour=0, minute=0, second=0, microsecond=0)
