"""SubscriptionWorkflow: one per license, from activation for as long as the license lives.

Every change to what was bought is asked for here, as a Workflow Update, so the caller gets the
answer or the refusal at once. Validators apply Microsoft's New Commerce rules before anything
is written (a refused change leaves no trace in history); the provider still has the last word,
and its refusal reaches the caller with the reason. Each change is idempotent by the caller's
request id (the update id): asked again, it answers as the first time and calls nobody, also
after the workflow continued as new (recent answers travel with it).

The workflow lives through the subscription's terms (workflows/subscription_term.py): at each
term's end it renews (auto-renew on: a new term and a new 168 h window, then it continues as
new) or expires (off, or suspended), warning the reseller 30 and 7 days before an expiry. The
renewal payment activities tell it when an unpaid renewal suspends it and when payment
reactivates it (signals); while suspended it refuses every change, with the way out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.subscription import WINDOW_CLOSED, SubscriptionActivities
    from csp_core.calendar import business_time
    from csp_core.ops.tasks import OpsOperation
    from csp_core.stages import SubscriptionStatus
    from csp_core.subscriptions.values import (
        REACTIVATED_SIGNAL,
        SUSPENDED_SIGNAL,
        PaymentHold,
        SubscriptionDetails,
        SubscriptionStart,
    )
    from temporalutil import search_attributes as sa
    from workflows.ops_task import OPS_TASKS, not_offered
    from workflows.subscription_ops import ChangeNotOffered, SubscriptionOpsChanges
    from workflows.subscription_term import TERM_LIFECYCLE, TERMS_FOLLOWED_LATE

# The caller is waiting on the answer: retry throttling, outages and a renewal in progress (409,
# ~2 min) for a while, then fail the change with the provider's last answer.
PROVIDER_CHANGE: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
    ),
)

# Patch: a provider's event (provider_subscription_changed) makes it look at the provider now.
PROVIDER_EVENTS = "subscription-provider-events"

# Error types of refused changes (the client sees them as the update failure's cause).
CHANGE_REFUSED = "SubscriptionChangeRefused"
TRANSFER_REFUSED = "LicenseTransferRefused"


@workflow.defn
class SubscriptionWorkflow(SubscriptionOpsChanges):
    @workflow.init
    def __init__(self, start: SubscriptionStart) -> None:
        super().__init__(start)

    @workflow.run
    async def run(self, start: SubscriptionStart) -> SubscriptionDetails:
        self._show()
        if workflow.patched(TERM_LIFECYCLE):
            return await self._live(first_run=start.carried is None)
        # Started before terms were followed (v5): it only waited for a cancel, until told to
        # follow its terms (`follow_terms`); then it lives as a new one does from here on.
        await workflow.wait_condition(
            lambda: (
                (self._status.is_final and workflow.all_handlers_finished()) or self._follow_terms
            )
        )
        if not self._status.is_final and workflow.patched(TERMS_FOLLOWED_LATE):
            return await self._live(first_run=True)
        await workflow.wait_condition(
            lambda: self._status.is_final and workflow.all_handlers_finished()
        )
        await self._notices.drain()
        return self.details()

    # ------------------------------------------------------------------ reads
    @workflow.query(description="Where the subscription stands.")
    def details(self) -> SubscriptionDetails:
        return self._details()

    # ------------------------------------------------------------------ payment holds
    @workflow.signal(
        name=SUSPENDED_SIGNAL,
        description="An unpaid renewal charge suspended the subscription at the provider (which "
        "also turned its auto-renew off): every change is refused until it is reactivated.",
    )
    def suspended_for_nonpayment(self, hold: PaymentHold) -> None:
        self._hold(hold)

    @workflow.signal(
        name=REACTIVATED_SIGNAL,
        description="The renewal charge was paid and the provider reactivated the subscription.",
    )
    def reactivated_after_payment(self, hold: PaymentHold) -> None:
        self._release(hold)

    @workflow.signal(
        description="A workflow started before terms were followed (release v5) starts "
        "following them: expiry notices, renewal or expiry at the term's end. Harmless on others."
    )
    def follow_terms(self) -> None:
        self._follow_terms = True

    @workflow.signal(
        description="The provider announced a change of this subscription (Partner Center's "
        "subscription-updated event): its view (status, auto-renew, seats) is taken over now, "
        "as at a term's end. Harmless when nothing changed."
    )
    async def provider_subscription_changed(self, event: str | None = None) -> None:
        if self._status.is_final or not workflow.patched(PROVIDER_EVENTS):
            return
        async with self._changing:  # after a change of ours in flight, never in the middle
            view = await self._look_up()
            if view is None or self._status.is_final:
                return
            self._take_over(view)
            if self._status is SubscriptionStatus.CANCELLED:
                # Cancelled at the provider, outside this system: the registry follows.
                self._cancelled_at = workflow.now()
                self._show()
                await self._record_closed()

    # ------------------------------------------------------------------ seats
    @workflow.update(description="Add seats (any time while active).")
    async def add_seats(self, n: int) -> SubscriptionDetails:
        return await self._change_seats(self._seats + n)

    @add_seats.validator
    def _add_seats_allowed(self, n: int) -> None:
        if self._answered():
            return
        if n < 1:
            raise ApplicationError(
                f"seats to add must be at least 1 (got {n}); to remove seats use set_seats",
                type=CHANGE_REFUSED,
            )
        self._check_quantity(self._seats + n)

    @workflow.update(
        description="Set the total seats: more any time while active, fewer only within 168 h "
        "of the purchase or the term's renewal, never below one."
    )
    async def set_seats(self, quantity: int) -> SubscriptionDetails:
        return await self._change_seats(quantity)

    @set_seats.validator
    def _set_seats_allowed(self, quantity: int) -> None:
        if self._answered():
            return
        self._check_quantity(quantity)

    # ------------------------------------------------------------------ cancel
    @workflow.update(description="Cancel the subscription; only within its 168 h window.")
    async def cancel(self) -> SubscriptionDetails:
        if (answer := self._answered()) is not None:
            return answer
        async with self._changing:
            self._check_cancel()  # a change accepted before this one may have ended it
            try:
                await self._provider(
                    SubscriptionActivities.cancel,
                    self._ref,
                    self._update_id(),
                    summary="Cancel at the provider",
                )
            except ChangeNotOffered as no:
                await self._ask_ops(OpsOperation.CANCEL, no.provider)
                return self._answer()  # pending: cancelled once ops confirm it
            self._status = SubscriptionStatus.CANCELLED
            self._cancelled_at = workflow.now()
            workflow.upsert_search_attributes(
                [sa.SUBSCRIPTION_STATUS.value_set(self._status.value)]
            )
            await self._tell_cancelled()
            return self._answer()

    @cancel.validator
    def _cancel_allowed(self) -> None:
        if self._answered():
            return
        self._check_cancel()

    # ------------------------------------------------------------------ auto-renew
    @workflow.update(description="Turn auto-renew on or off.")
    async def set_auto_renew(self, enabled: bool) -> SubscriptionDetails:
        if (answer := self._answered()) is not None:
            return answer
        async with self._changing:
            self._check_changeable()
            if enabled != self._auto_renew:
                try:
                    self._auto_renew = await self._provider(
                        SubscriptionActivities.set_auto_renew,
                        self._ref,
                        enabled,
                        self._update_id(),
                        summary=f"Auto-renew {'on' if enabled else 'off'}",
                    )
                except ChangeNotOffered as no:
                    await self._ask_ops(
                        OpsOperation.SET_AUTO_RENEW, no.provider, auto_renew=enabled
                    )
                    return self._answer()  # pending until ops confirm it
                workflow.upsert_search_attributes([sa.AUTO_RENEW.value_set(self._auto_renew)])
                self._show()
            return self._answer()

    @set_auto_renew.validator
    def _auto_renew_allowed(self, enabled: bool) -> None:
        if self._answered():
            return
        self._check_changeable()

    # ------------------------------------------------------------------ transfer
    @workflow.update(description="Move the license to another domain: always refused.")
    def transfer(self, to_domain: str) -> SubscriptionDetails:
        raise ApplicationError(self._transfer_refusal(to_domain), type=TRANSFER_REFUSED)

    @transfer.validator
    def _transfer_allowed(self, to_domain: str) -> None:
        raise ApplicationError(self._transfer_refusal(to_domain), type=TRANSFER_REFUSED)

    def _transfer_refusal(self, to_domain: str) -> str:
        target = to_domain.strip().lower() or "the other domain"
        return (
            f"subscription {self._start.subscription_id} cannot move to {target}: a license "
            f"never leaves its tenant ({self._start.domain}), Microsoft binds it there for good. "
            f"Way out: buy a new subscription on {target} with `csp order submit <order.json>`, "
            f'an order with tenant mode "link" and domain {target} for {self._start.product_name} '
            f"({self._start.sku}); then cancel this one while its window is open (until "
            f"{business_time(self._cancellable_until)}) or turn its auto-renew off."
        )

    # ------------------------------------------------------------------ rules
    def _check_changeable(self) -> None:
        sub_id = self._start.subscription_id
        if self._status.is_final:
            raise ApplicationError(
                f"subscription {sub_id} is {self._status.value}: nothing about it can change any "
                "more; buy a new subscription with `csp order submit` if the client needs "
                "licenses again",
                type=CHANGE_REFUSED,
            )
        if self._status is SubscriptionStatus.SUSPENDED:
            period = self._suspended_for or "<YYYY-MM>"
            raise ApplicationError(
                f"subscription {sub_id} is SUSPENDED for its unpaid renewal charge of {period}: "
                "Microsoft accepts no change while it is suspended. Way out: record the payment "
                f"(`csp payment record {sub_id} --period {period} --reference <ref>`); the "
                "subscription is reactivated then, and the change can be asked again",
                type=CHANGE_REFUSED,
            )
        self._check_nothing_pending()

    def _check_quantity(self, quantity: int) -> None:
        self._check_changeable()
        if quantity < 1:
            raise ApplicationError(
                f"a subscription keeps at least 1 seat (asked for {quantity}); to stop paying for "
                "it, cancel it within its 168 h window or turn its auto-renew off",
                type=CHANGE_REFUSED,
            )
        if quantity < self._seats and not self._window_open():
            raise ApplicationError(
                f"subscription {self._start.subscription_id}: seats can only be removed within "
                "168 h of the purchase or of the term's renewal, and that window ended at "
                f"{business_time(self._cancellable_until)}. {self._way_out()}",
                type=WINDOW_CLOSED,
            )

    def _check_cancel(self) -> None:
        self._check_changeable()
        if not self._window_open():
            raise ApplicationError(
                f"subscription {self._start.subscription_id} can only be cancelled within 168 h "
                "of the purchase or of the term's renewal, and that window ended at "
                f"{business_time(self._cancellable_until)}. {self._way_out()}",
                type=WINDOW_CLOSED,
            )

    def _way_out(self) -> str:
        return (
            "Way out: turn auto-renew off so it ends at the term's end "
            f"({business_time(self._term_end_instant)}), or reduce the seats at renewal, within "
            "168 h after it."
        )

    # ------------------------------------------------------------------ doing
    async def _change_seats(self, quantity: int) -> SubscriptionDetails:
        if (answer := self._answered()) is not None:
            return answer
        async with self._changing:
            self._check_quantity(quantity)  # a change accepted before this one may differ
            if quantity != self._seats:
                try:
                    changed = await self._provider(
                        SubscriptionActivities.change_seats,
                        self._ref,
                        quantity,
                        self._update_id(),
                        summary=f"Seats {self._seats} → {quantity}",
                    )
                except ChangeNotOffered as no:
                    await self._ask_ops(OpsOperation.CHANGE_SEATS, no.provider, seats=quantity)
                    return self._answer()  # pending: the seats stay until ops confirm it
                self._seats = changed.seats
                workflow.upsert_search_attributes([sa.SEATS.value_set(self._seats)])
                self._show()
            return self._answer()

    async def _provider(self, activity: Any, *args: Any, summary: str) -> Any:
        """Run a provider change; its refusal fails the update with the provider's reason."""
        try:
            return await workflow.execute_activity_method(
                activity, args=list(args), summary=summary, **PROVIDER_CHANGE
            )
        except ActivityError as err:
            if (provider := not_offered(err)) and workflow.patched(OPS_TASKS):
                raise ChangeNotOffered(provider) from err  # the caller asks ops instead
            cause = err.cause
            reason = str(cause) if cause is not None else str(err)
            if isinstance(cause, ApplicationError) and cause.type == WINDOW_CLOSED:
                raise ApplicationError(
                    f"the provider refused: {reason}. {self._way_out()}",
                    type=WINDOW_CLOSED,
                ) from err
            raise ApplicationError(
                f"the provider did not make the change: {reason}", type=CHANGE_REFUSED
            ) from err

    @staticmethod
    def _update_id() -> str:
        info = workflow.current_update_info()
        assert info is not None, "only called from an update handler"
        return info.id

    def _answered(self) -> SubscriptionDetails | None:
        return self._answers.get(self._update_id())

    def _answer(self) -> SubscriptionDetails:
        answer = self.details()
        self._keep_answer(self._update_id(), answer)
        return answer
