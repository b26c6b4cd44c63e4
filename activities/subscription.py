"""Activities of the subscription workflow: each change asked of the provider, with the registry
brought in line in the same activity, so a retry after a lost answer repeats the same request
(same MS-RequestId) and records the same result."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import in_thread, provider_failure, request_id, send_once
from csp_core.notifications import messages
from csp_core.notifications.mailer import Mailer
from csp_core.ops.tasks import OpsOperation, OpsTask
from csp_core.providers.port import (
    WINDOW_CLOSED_CODES,
    Provider,
    ProviderError,
    ProviderSubscription,
)
from csp_core.providers.port import SubscriptionStatus as ProviderStatus
from csp_core.registry import Registry, UnknownSubscription
from csp_core.renewals.billing import DEFAULT_CUTOFF_DAY, RenewalPolicy, billing_span
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.values import (
    CancelNotice,
    ProviderView,
    SeatsChanged,
    SubscriptionRef,
    TermNotice,
    TermNoticeKind,
    TermRecord,
    status_from_provider,
)
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE, zone

log = structlog.get_logger(__name__)

# ApplicationError.type of a change the provider refused because its 168 h window is over.
WINDOW_CLOSED = "ChangeWindowClosed"


@dataclass
class SubscriptionActivities:
    provider: Provider
    registry: Registry
    mailer: Mailer
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE
    payment_cutoff_day: int = DEFAULT_CUTOFF_DAY  # dates annual billing's renewal month

    @activity.defn
    async def change_seats(
        self, ref: SubscriptionRef, quantity: int, change_id: str
    ) -> SeatsChanged:
        """Set the total seats at the provider, then in the registry. `change_id` is the
        caller's request id: it derives the MS-RequestId, so a retry asks the same question.

        The registry records the new quantity and the change's proration in one transaction,
        once per change id (the seat changes ledger): from the change to the end of the billing
        period it falls in, billed by the next renewal charge. The change is dated when the
        workflow scheduled it (the first attempt's scheduled time, on the workflow's clock), so
        a retry after a lost answer dates and prorates it the same."""
        try:
            answer = await self.provider.change_quantity(
                ref.tenant_id,
                ref.subscription_id,
                quantity,
                request_id=request_id(f"seats:{change_id}"),
            )
        except ProviderError as err:
            raise _refusal(err, f"changing {ref.subscription_id} to {quantity} seat(s)") from err
        await self._record_seats(ref, answer.quantity, change_id)
        return SeatsChanged(seats=answer.quantity)

    async def _record_seats(self, ref: SubscriptionRef, quantity: int, change_id: str) -> None:
        sub = await in_thread(self.registry.get_subscription, ref.subscription_id)
        if sub is None:
            raise UnknownSubscription(f"subscription {ref.subscription_id} is not recorded")
        changed_at = activity.info().scheduled_time
        policy = RenewalPolicy(timezone=self.business_timezone, cutoff_day=self.payment_cutoff_day)
        span = billing_span(sub.billing_cycle, sub.activated_at, changed_at, policy)
        change, newly = await in_thread(
            self.registry.record_seat_change,
            ref.subscription_id,
            change_id,
            changed_at,
            quantity,
            span,
        )
        log.info(
            "seat_change_recorded" if newly else "seat_change_already_recorded",
            subscription_id=ref.subscription_id,
            seats_before=change.seats_before,
            seats_after=change.seats_after,
            proration=str(change.proration_amount),
            prorated_until=change.prorated_until.isoformat(),
        )

    @activity.defn
    async def cancel(self, ref: SubscriptionRef, change_id: str) -> None:
        """Cancel at the provider (New Commerce: status deleted), then mark it in the registry."""
        try:
            await self.provider.cancel_subscription(
                ref.tenant_id, ref.subscription_id, request_id=request_id(f"cancel:{change_id}")
            )
        except ProviderError as err:
            raise _refusal(err, f"cancelling {ref.subscription_id}") from err
        await self._record_cancelled(ref)

    async def _record_cancelled(self, ref: SubscriptionRef) -> None:
        await in_thread(
            self.registry.set_subscription_status,
            ref.subscription_id,
            "cancelled",
            cancelled_at=activity.info().scheduled_time,
        )

    @activity.defn
    async def set_auto_renew(self, ref: SubscriptionRef, enabled: bool, change_id: str) -> bool:
        try:
            answer = await self.provider.set_auto_renew(
                ref.tenant_id,
                ref.subscription_id,
                enabled,
                request_id=request_id(f"auto-renew:{change_id}"),
            )
        except ProviderError as err:
            state = "on" if enabled else "off"
            raise _refusal(err, f"turning auto-renew {state} on {ref.subscription_id}") from err
        enabled_now = answer.auto_renew_enabled
        await in_thread(self.registry.set_subscription_auto_renew, ref.subscription_id, enabled_now)
        return enabled_now

    # ------------------------------------------------------------------ done by ops, by hand
    @activity.defn
    async def record_confirmed_change(self, ref: SubscriptionRef, task: OpsTask) -> str | None:
        """Ops made a change by hand at the provider (it has no API for it) and confirmed it:
        the registry records it as the API call's activity would have (seats with their
        proration, dated now; cancelled; auto-renew). Ops' word stands; what the provider shows,
        when it differs, is returned for them to check (its view may lag)."""
        view = await self._provider_view(ref)
        match task.operation:
            case OpsOperation.CHANGE_SEATS:
                assert task.seats is not None and task.change_id is not None
                await self._record_seats(ref, task.seats, task.change_id)
                differs = view is not None and view.quantity != task.seats
                shown = f"{view.quantity} seat(s)" if view else ""
            case OpsOperation.CANCEL:
                await self._record_cancelled(ref)
                differs = view is not None and view.status is not ProviderStatus.DELETED
                shown = f"status {view.status.value}" if view else ""
            case OpsOperation.SET_AUTO_RENEW:
                assert task.auto_renew is not None
                await in_thread(
                    self.registry.set_subscription_auto_renew, ref.subscription_id, task.auto_renew
                )
                differs = view is not None and view.auto_renew_enabled != task.auto_renew
                shown = f"auto-renew {'on' if view and view.auto_renew_enabled else 'off'}"
            case _:
                raise ValueError(f"not a subscription change: {task.operation}")
        if not differs:
            return None
        log.warning("provider_view_differs", subscription_id=ref.subscription_id, shows=shown)
        return f"the provider still shows {shown}"

    async def _provider_view(self, ref: SubscriptionRef) -> ProviderSubscription | None:
        try:
            return await self.provider.get_subscription(ref.tenant_id, ref.subscription_id)
        except ProviderError as err:
            log.warning(
                "provider_view_unavailable", subscription_id=ref.subscription_id, error=str(err)
            )
            return None

    # ------------------------------------------------------------------ terms
    @activity.defn
    async def look_up(self, ref: SubscriptionRef) -> ProviderView:
        """The subscription as the provider has it now (at a term's end: was it cancelled,
        suspended, or its auto-renew changed, outside this system?)."""
        try:
            found = await self.provider.get_subscription(ref.tenant_id, ref.subscription_id)
        except ProviderError as err:
            raise provider_failure(err, f"reading subscription {ref.subscription_id}") from err
        return ProviderView(
            status=status_from_provider(found.status),
            seats=found.quantity,
            auto_renew=found.auto_renew_enabled,
            term_started_at=found.effective_start_date,
            term_ends_at=found.commitment_end_date,
        )

    @activity.defn
    async def record_term(self, ref: SubscriptionRef, term: TermRecord) -> None:
        """The registry keeps the current term (the first one, then each renewal's), and the
        seats and auto-renew as the workflow holds them then."""
        try:
            await in_thread(
                self.registry.record_subscription_term,
                ref.subscription_id,
                term.started_at,
                term.ends_at,
            )
            sub_id = ref.subscription_id
            await in_thread(self.registry.set_subscription_quantity, sub_id, term.seats)
            await in_thread(self.registry.set_subscription_auto_renew, sub_id, term.auto_renew)
        except UnknownSubscription:
            # Nothing to keep it in (a subscription the registry never recorded).
            log.warning("term_not_recorded", subscription_id=ref.subscription_id)

    @activity.defn
    async def record_closed(self, ref: SubscriptionRef, status: SubscriptionStatus) -> None:
        """The term ended without renewing (EXPIRED), or the provider shows it cancelled
        outside this system (CANCELLED): the registry says so, and renewal charges stop (only
        active and suspended subscriptions owe them). A subscription the registry already
        shows closed is left as it is."""
        closed = {SubscriptionStatus.EXPIRED: "expired", SubscriptionStatus.CANCELLED: "cancelled"}
        when = activity.info().scheduled_time
        try:
            await in_thread(
                self.registry.set_subscription_status,
                ref.subscription_id,
                closed[status],
                cancelled_at=when if status is SubscriptionStatus.CANCELLED else None,
                only_from={"active", "suspended"},
            )
        except UnknownSubscription:
            log.warning("close_not_recorded", subscription_id=ref.subscription_id)

    @activity.defn
    async def notify_term(self, notice: TermNotice) -> None:
        """Renewed, expiring in N days, or expired: an e-mail to the reseller, once."""
        sub = notice.subscription
        term = messages.TermDetails(
            subscription_id=sub.subscription_id,
            product_name=sub.product_name,
            seats=notice.seats,
            company_name=sub.company_name,
            domain=sub.domain,
            reseller_name=sub.reseller_name,
            reseller_email=sub.reseller_email,
            term=sub.term.value,
            billing_cycle=sub.billing_cycle.value,
            term_started_at=notice.term_started_at,
            term_ends_at=notice.term_ends_at,
            order_id=sub.order_id,
        )
        tz = zone(self.business_timezone)
        match notice.kind:
            case TermNoticeKind.RENEWED:
                email = messages.subscription_renewed(term, key=notice.key, tz=tz)
            case TermNoticeKind.EXPIRING:
                email = messages.subscription_expiring(
                    term,
                    notice.days_before or 0,
                    key=notice.key,
                    tz=tz,
                    suspended_for=notice.suspended_for,
                )
            case TermNoticeKind.EXPIRED:
                email = messages.subscription_expired(
                    term, key=notice.key, tz=tz, suspended_for=notice.suspended_for
                )
        if not await send_once(
            self.registry, self.mailer, email, subscription_id=sub.subscription_id
        ):
            log.info("notification_already_sent", key=email.key)

    @activity.defn
    async def notify_cancelled(self, notice: CancelNotice) -> None:
        sub = notice.subscription
        email = messages.subscription_cancelled(
            key=notice.key,
            subscription_id=sub.subscription_id,
            reseller_name=sub.reseller_name,
            reseller_email=sub.reseller_email,
            company_name=sub.company_name,
            domain=sub.domain,
            product_name=sub.product_name,
            seats=notice.seats,
            cancelled_at=notice.cancelled_at,
            tz=zone(self.business_timezone),
        )
        if not await send_once(
            self.registry, self.mailer, email, subscription_id=sub.subscription_id
        ):
            log.info("notification_already_sent", key=email.key)


def _refusal(err: ProviderError, doing: str) -> ApplicationError:
    """A window-closed refusal gets its own type, so the workflow can say what to do instead."""
    failure = provider_failure(err, doing)
    if not err.transient and err.code in WINDOW_CLOSED_CODES:
        return ApplicationError(str(failure), type=WINDOW_CLOSED, non_retryable=True)
    return failure
