"""Values the subscription workflow carries: its input, the changes it asks the provider for,
and what it reports. Plain pydantic; no Temporal import."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from csp_core.ops.tasks import OpsTask
from csp_core.orders.models import BillingCycle, Term
from csp_core.providers.port import SubscriptionStatus as ProviderStatus
from csp_core.stages import OpsAttention, SubscriptionStatus

# Re-exported: their home is terms.py (callers import them from here too).
from csp_core.subscriptions.terms import term_end as term_end
from csp_core.subscriptions.terms import term_ends_on as term_ends_on
from csp_core.subscriptions.windows import change_window_end
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


def subscription_workflow_id(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


# Signals the renewal activities send to a subscription's workflow when they suspend it for an
# unpaid renewal charge, or reactivate it once paid. Named here: activities cannot import
# workflows.
SUSPENDED_SIGNAL = "suspended_for_nonpayment"
REACTIVATED_SIGNAL = "reactivated_after_payment"


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
    # Where the expiry notices' local time (09:00) is read; a business setting, snapshotted.
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE
    # The starter recorded the first term, seats and auto-renew in the registry already (an
    # order's activation does, in the same write as the status): the workflow need not.
    term_recorded: bool = False
    # Set only when a run continues as new: the state it hands over (then it, not the fields
    # above, says what the subscription is now).
    carried: SubscriptionCarry | None = None

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
    # When the term is over and it renews (auto-renew on) or expires (off): the anniversary.
    term_end_instant: datetime | None = None
    # The renewal period whose unpaid charge suspended it, while SUSPENDED.
    suspended_for: str | None = None
    # The next expiry notice this term, if one is still to come (sent only if auto-renew is
    # off at that instant).
    next_notice_at: datetime | None = None
    expired_at: datetime | None = None
    renewals: int = 0
    # Changes asked of ops because the provider has no API for them (Ingram): not made until
    # ops confirm them; the seats, status and auto-renew above are what holds now.
    ops_tasks: list[OpsTask] = []


class PaymentHold(_Model):
    """The renewal charge of `period` was not paid by its cutoff (a suspension), or was paid
    afterwards (a reactivation): what the renewal activities signal."""

    period: str


class ProviderView(_Model):
    """What the provider says about the subscription when its term ends."""

    status: SubscriptionStatus
    seats: int
    auto_renew: bool
    term_started_at: datetime | None = None
    term_ends_at: datetime | None = None


_PROVIDER_STATUS = {
    ProviderStatus.ACTIVE: SubscriptionStatus.ACTIVE,
    ProviderStatus.PENDING: SubscriptionStatus.ACTIVE,
    ProviderStatus.NONE: SubscriptionStatus.ACTIVE,
    ProviderStatus.SUSPENDED: SubscriptionStatus.SUSPENDED,
    ProviderStatus.DELETED: SubscriptionStatus.CANCELLED,
    ProviderStatus.EXPIRED: SubscriptionStatus.EXPIRED,
    ProviderStatus.DISABLED: SubscriptionStatus.EXPIRED,
}


def status_from_provider(status: ProviderStatus) -> SubscriptionStatus:
    """Partner Center's status in our terms (disabled is what an expired term becomes)."""
    return _PROVIDER_STATUS[status]


class TermRecord(_Model):
    """The current term for the registry, with the seats and auto-renew the workflow holds
    (taken over from the provider at the term's end)."""

    started_at: datetime
    ends_at: datetime
    seats: int
    auto_renew: bool


class TermNoticeKind(StrEnum):
    RENEWED = "renewed"
    EXPIRING = "expiring"
    EXPIRED = "expired"


class TermNotice(_Model):
    """The reseller is told that a term renewed (the new term), will expire in `days_before`
    days, or expired (the term that ended)."""

    kind: TermNoticeKind
    subscription: SubscriptionStart
    seats: int
    term_started_at: datetime
    term_ends_at: datetime
    days_before: int | None = None
    # Set when it expired while suspended for an unpaid renewal.
    suspended_for: str | None = None

    @property
    def key(self) -> str:
        """One e-mail per subscription, term and kind (and notice day): stable across replays,
        retries and continue-as-new, so the e-mail ledger sends it once."""
        sub_id, last_day = self.subscription.subscription_id, term_ends_on(self.term_ends_at)
        term = f"subscription-{sub_id}:term-{last_day}"
        if self.kind is TermNoticeKind.EXPIRING:
            return f"{term}:expiring-{self.days_before}d"
        return f"{term}:{self.kind.value}"


class KeptAnswer(_Model):
    """An update's answer, kept so the same request id asked again gets it again."""

    update_id: str
    answer: SubscriptionDetails


class SubscriptionCarry(_Model):
    """Everything a SubscriptionWorkflow hands to its next run when it continues as new (at
    each renewal, or when its history grows)."""

    status: SubscriptionStatus
    seats: int
    auto_renew: bool
    term_started_at: datetime
    term_ends_at: datetime
    suspended_for: str | None = None
    # Expiry notices of this term still to come (days before its last day).
    notices_ahead: tuple[int, ...] = ()
    ops_attention: tuple[OpsAttention, ...] = ()
    answers: tuple[KeptAnswer, ...] = ()
    renewals: int = 0
    ops_tasks: tuple[OpsTask, ...] = ()  # changes still waiting for ops


SubscriptionStart.model_rebuild()  # its `carried` field is defined below it
