"""The state a SubscriptionWorkflow holds, and its life over the subscription's terms.

SubscriptionWorkflow (workflows/subscription.py) adds the commands (Updates, signals, query)
to this base; here is what happens on its own, by the calendar:

- 30 and 7 days before the term's last day, at 09:00 in the business time zone
  (csp_core/subscriptions/terms.py), a subscription whose auto-renew is off at that instant
  is warned that it will expire. A notice due while auto-renew is on is not sent.
- At the term's end (the anniversary, 00:00 UTC) the provider is asked how it sees the
  subscription, so a cancel, a suspension or an auto-renew change made outside this system is
  taken over rather than overwritten. Then, active with auto-renew on: it renews (the next term
  starts at the anniversary, or at the provider's renewal when the provider shows a newer one;
  a new 168 h window opens; the registry, the search attributes and the reseller learn it) and
  the workflow continues as new. Otherwise (auto-renew off, or suspended) it expires: EXPIRED,
  the registry says expired (no renewal charge follows), the reseller is told, it ends.
- When its history grows (Temporal suggests it), it continues as new too. Either way it waits
  for running Updates and notices first, and carries its whole state, with the answers to the
  latest requests so a request id asked again still gets its first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.subscription import SubscriptionActivities
    from csp_core.calendar import business_time
    from csp_core.stages import SubscriptionStatus
    from csp_core.subscriptions.terms import (
        expiry_notice_at,
        expiry_notices_ahead,
        next_term,
        term_end,
        term_end_instant,
        term_ends_on,
    )
    from csp_core.subscriptions.values import (
        KeptAnswer,
        PaymentHold,
        ProviderView,
        SubscriptionCarry,
        SubscriptionDetails,
        SubscriptionRef,
        SubscriptionStart,
        TermNotice,
        TermNoticeKind,
        TermRecord,
    )
    from csp_core.subscriptions.windows import change_window_end, change_window_open
    from csp_core.timezones import zone
    from temporalutil import search_attributes as sa
    from workflows.common import BackgroundNotices, OpsAlerts
    from workflows.ops_task import OpsTasks

# Patch: the workflow lives through its terms (term end, expiry notices, continue-as-new).
# Histories recorded before it only waited for a cancel.
TERM_LIFECYCLE = "subscription-term-lifecycle"
# Patch: a workflow started before TERM_LIFECYCLE, told to follow its terms (`follow_terms`).
TERMS_FOLLOWED_LATE = "subscription-terms-followed-late"

# Answers kept for requests asked again after a continue-as-new (the latest ones).
ANSWERS_KEPT = 100

# At a term's end: ask the provider for an hour at most, then decide on what the workflow knows.
LOOK_UP: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(hours=1),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
    ),
)
# Registry writes: retried until the registry answers.
BOOKKEEPING: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5)
    ),
)


class SubscriptionTerms:
    def __init__(self, start: SubscriptionStart) -> None:
        self._start = start.model_copy(update={"carried": None})  # what notices are about
        self._tz = zone(start.business_timezone)
        state = start.carried or SubscriptionCarry(
            status=SubscriptionStatus.ACTIVE,
            seats=start.seats,
            auto_renew=start.auto_renew,
            term_started_at=start.purchased_at,
            term_ends_at=start.term_end,
        )
        self._status = state.status
        self._seats = state.seats
        self._auto_renew = state.auto_renew
        self._term_started_at = state.term_started_at
        self._term_ends_at = state.term_ends_at
        self._suspended_for = state.suspended_for
        self._notices_ahead = state.notices_ahead
        self._renewals = state.renewals
        self._cancelled_at: datetime | None = None
        self._expired_at: datetime | None = None
        # Answers already given, by update id: the same request asked again gets the same answer.
        self._answers = {kept.update_id: kept.answer for kept in state.answers}
        # One provider change at a time, in the order they were accepted; a term's end waits too.
        self._changing = asyncio.Lock()
        self._alerts = OpsAlerts()
        self._alerts.raised = set(state.ops_attention)
        self._notices = BackgroundNotices(self._alerts, self._show)
        self._follow_terms = False  # a v5 workflow was told to follow its terms
        # Changes asked of ops where the provider has no API (workflows/subscription_ops.py);
        # those still open when the run continued as new are followed again by `_live`.
        self._ops = OpsTasks(self._alerts, self._notices, self._show)
        self._carried_ops = state.ops_tasks

    # ------------------------------------------------------------------ the terms
    async def _live(self, *, first_run: bool) -> SubscriptionDetails:
        if self._carried_ops:
            self._ops.resume(self._carried_ops)
            self._resume_ops_changes()
        if first_run:
            self._notices_ahead = expiry_notices_ahead(self._term_ends_at, workflow.now(), self._tz)
            self._show()
            if not self._start.term_recorded:  # else its starter recorded it (input: replay-safe)
                async with self._changing:  # its seats are the registry's until a change is done
                    await self._record_term()
        while True:
            at, days_before = self._next_moment()
            await self._wait_until(at, days_before)
            if self._status.is_final:  # cancelled by an Update
                return await self._close()
            if workflow.now() >= at:
                if days_before is not None:
                    await self._expiry_notice(days_before)
                elif await self._end_term():
                    return await self._close()
                else:
                    return await self._continue_as_new()  # the new term, in a new run
            if workflow.info().is_continue_as_new_suggested():
                return await self._continue_as_new()

    def _next_moment(self) -> tuple[datetime, int | None]:
        """The next expiry notice of this term (days before its end), else the term's end."""
        for days_before in sorted(self._notices_ahead, reverse=True):
            return expiry_notice_at(self._term_ends_at, days_before, self._tz), days_before
        return self._term_end_instant, None

    async def _wait_until(self, at: datetime, days_before: int | None) -> None:
        timeout = at - workflow.now()
        if timeout <= timedelta(0):
            return
        what = "term end" if days_before is None else f"{days_before}-day expiry notice"
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._status.is_final or workflow.info().is_continue_as_new_suggested(),
                timeout=timeout,
                timeout_summary=f"Wait for the {what} at {business_time(at)}",
            )

    async def _expiry_notice(self, days_before: int) -> None:
        self._notices_ahead = tuple(d for d in self._notices_ahead if d != days_before)
        self._show()
        if self._auto_renew:
            return  # it renews: nothing to warn about
        await self._tell(TermNoticeKind.EXPIRING, days_before=days_before)

    async def _end_term(self) -> bool:
        """Renew or expire the term that just ended; True when the subscription is over."""
        async with self._changing:  # no change of ours is at the provider meanwhile
            view = await self._look_up()
            if view is not None:
                self._take_over(view)
            if self._status is SubscriptionStatus.CANCELLED:
                # Cancelled at the provider, outside this system: the registry follows.
                self._cancelled_at = workflow.now()
                self._show()
                await self._record_closed()
                return True
            if self._status is SubscriptionStatus.ACTIVE and self._auto_renew:
                await self._renew(view)
                return False
            await self._expire()
            return True

    async def _look_up(self) -> ProviderView | None:
        try:
            return await workflow.execute_activity_method(
                SubscriptionActivities.look_up,
                self._ref,
                summary="Ask the provider at the term's end",
                **LOOK_UP,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "provider not reachable at the term's end (%s); deciding on what the workflow "
                "knows",
                err.cause or err,
            )
            return None

    def _take_over(self, view: ProviderView) -> None:
        """The provider's status, auto-renew and seats win: a change made there, outside this
        system, is what is true now."""
        changes = []
        if view.status is not self._status:
            workflow.logger.warning(
                "the provider shows %s, the workflow had %s", view.status, self._status
            )
            self._status = view.status
            changes.append(sa.SUBSCRIPTION_STATUS.value_set(view.status.value))
            if view.status is not SubscriptionStatus.SUSPENDED:
                self._suspended_for = None
        if view.auto_renew != self._auto_renew:
            self._auto_renew = view.auto_renew
            changes.append(sa.AUTO_RENEW.value_set(view.auto_renew))
        if view.seats != self._seats:
            self._seats = view.seats
            changes.append(sa.SEATS.value_set(view.seats))
        if changes:
            workflow.upsert_search_attributes(changes)
            self._show()

    async def _renew(self, view: ProviderView | None) -> None:
        started, ends = next_term(self._term_end_instant, self._start.term)
        # The sandbox's clock is the wall clock while tests skip time: its dates win only when
        # they show a newer term than ours (a renewal the provider already made).
        if view is not None and view.term_started_at and view.term_started_at > started:
            started = view.term_started_at
            ends = view.term_ends_at or term_end(started, self._start.term)
        self._term_started_at, self._term_ends_at = started, ends
        self._renewals += 1
        self._notices_ahead = expiry_notices_ahead(ends, workflow.now(), self._tz)
        workflow.upsert_search_attributes(
            [
                sa.TERM_ENDS_ON.value_set(term_ends_on(ends)),
                sa.CANCELLABLE_UNTIL.value_set(self._cancellable_until),
            ]
        )
        self._show()
        await self._record_term()
        await self._tell(TermNoticeKind.RENEWED)

    async def _expire(self) -> None:
        self._status = SubscriptionStatus.EXPIRED
        self._expired_at = workflow.now()
        workflow.upsert_search_attributes([sa.SUBSCRIPTION_STATUS.value_set(self._status.value)])
        self._show()
        await self._record_closed()
        await self._tell(TermNoticeKind.EXPIRED)

    async def _record_term(self) -> None:
        term = TermRecord(
            started_at=self._term_started_at,
            ends_at=self._term_ends_at,
            seats=self._seats,
            auto_renew=self._auto_renew,
        )
        await workflow.execute_activity_method(
            SubscriptionActivities.record_term,
            args=[self._ref, term],
            summary=f"Registry: term until {term_ends_on(self._term_ends_at)}",
            **BOOKKEEPING,
        )

    async def _record_closed(self) -> None:
        await workflow.execute_activity_method(
            SubscriptionActivities.record_closed,
            args=[self._ref, self._status],
            summary=f"Registry: {self._status.value.lower()}",
            **BOOKKEEPING,
        )

    async def _tell(self, kind: TermNoticeKind, days_before: int | None = None) -> None:
        notice = TermNotice(
            kind=kind,
            subscription=self._start,
            seats=self._seats,
            term_started_at=self._term_started_at,
            term_ends_at=self._term_ends_at,
            days_before=days_before,
            suspended_for=self._suspended_for,
        )
        what = kind.value if days_before is None else f"expires in {days_before} days"
        await self._notices.send(
            SubscriptionActivities.notify_term,
            notice,
            key=notice.key,
            summary=f"Tell the reseller: {what}",
        )

    # ------------------------------------------------------------------ ending a run
    async def _settle(self) -> None:
        """Until no Update is running and every notice was delivered or given up."""
        await workflow.wait_condition(
            lambda: (
                workflow.all_handlers_finished()
                and self._notices.idle
                and not self._changing.locked()  # no change confirmed by ops half applied
            )
        )

    async def _close(self) -> SubscriptionDetails:
        await self._ops.withdraw_all(f"the subscription is {self._status.value}")
        await self._settle()
        return self._details()

    async def _continue_as_new(self) -> SubscriptionDetails:
        """Hand the whole state to a new run. Returns only if the subscription ended (a cancel
        accepted) while running Updates and notices were finishing."""
        await self._settle()
        if self._status.is_final:
            return self._details()
        workflow.continue_as_new(
            self._start.model_copy(update={"carried": self._carry()}),
            search_attributes=workflow.info().typed_search_attributes,
        )

    def _carry(self) -> SubscriptionCarry:
        return SubscriptionCarry(
            status=self._status,
            seats=self._seats,
            auto_renew=self._auto_renew,
            term_started_at=self._term_started_at,
            term_ends_at=self._term_ends_at,
            suspended_for=self._suspended_for,
            notices_ahead=self._notices_ahead,
            ops_attention=tuple(sorted(self._alerts.raised)),
            answers=tuple(KeptAnswer(update_id=k, answer=v) for k, v in self._answers.items()),
            renewals=self._renewals,
            ops_tasks=tuple(self._ops.open),
        )

    def _resume_ops_changes(self) -> None:
        """Follow again the changes carried with ops (SubscriptionWorkflow does)."""

    def _keep_answer(self, update_id: str, answer: SubscriptionDetails) -> None:
        self._answers[update_id] = answer
        while len(self._answers) > ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]  # the oldest

    # ------------------------------------------------------------------ payment holds
    def _hold(self, hold: PaymentHold) -> None:
        """Suspended for an unpaid renewal: Partner Center also turns auto-renew off."""
        if self._status is not SubscriptionStatus.ACTIVE:
            return  # already suspended, or over
        self._status, self._suspended_for = SubscriptionStatus.SUSPENDED, hold.period
        changes = [sa.SUBSCRIPTION_STATUS.value_set(self._status.value)]
        if self._auto_renew:
            self._auto_renew = False
            changes.append(sa.AUTO_RENEW.value_set(False))
        workflow.upsert_search_attributes(changes)
        self._show()

    def _release(self, hold: PaymentHold) -> None:
        """Reactivated once paid; auto-renew stays off until someone turns it on again."""
        if self._status is not SubscriptionStatus.SUSPENDED:
            return
        self._status, self._suspended_for = SubscriptionStatus.ACTIVE, None
        workflow.upsert_search_attributes([sa.SUBSCRIPTION_STATUS.value_set(self._status.value)])
        self._show()

    # ------------------------------------------------------------------ derived
    @property
    def _ref(self) -> SubscriptionRef:
        return SubscriptionRef(
            subscription_id=self._start.subscription_id,
            tenant_id=self._start.tenant_id,
            domain=self._start.domain,
        )

    @property
    def _cancellable_until(self) -> datetime:
        return change_window_end(self._term_started_at)

    @property
    def _term_end_instant(self) -> datetime:
        return term_end_instant(self._term_ends_at)

    def _window_open(self) -> bool:
        return change_window_open(self._term_started_at, workflow.now())

    def _next_notice_at(self) -> datetime | None:
        if self._status.is_final or not self._notices_ahead:
            return None
        return self._next_moment()[0]

    def _details(self) -> SubscriptionDetails:
        return SubscriptionDetails(
            subscription_id=self._start.subscription_id,
            domain=self._start.domain,
            reseller_id=self._start.reseller_id,
            product_name=self._start.product_name,
            sku=self._start.sku,
            status=self._status,
            seats=self._seats,
            term=self._start.term,
            billing_cycle=self._start.billing_cycle,
            unit_price=self._start.unit_price,
            auto_renew=self._auto_renew,
            term_started_at=self._term_started_at,
            cancellable_until=self._cancellable_until,
            term_ends_at=self._term_ends_at,
            cancelled_at=self._cancelled_at,
            term_end_instant=self._term_end_instant,
            suspended_for=self._suspended_for,
            next_notice_at=self._next_notice_at(),
            expired_at=self._expired_at,
            renewals=self._renewals,
            ops_tasks=self._ops.open,
        )

    def _show(self) -> None:
        """Current details for ops (the Web UI's workflow page)."""
        start = self._start
        ends = "renews" if self._auto_renew else "expires"
        lines = [
            f"**{self._status.value}** · {start.product_name} ({start.sku}) on "
            f"**{start.domain}** · reseller {start.reseller_id}",
            f"Seats: {self._seats} · {start.term.value} billed {start.billing_cycle.value} · "
            f"auto-renew {'on' if self._auto_renew else 'off'}",
            f"Term: {business_time(self._term_started_at)} → "
            f"{business_time(self._term_end_instant)} (last day "
            f"{term_ends_on(self._term_ends_at)}; {ends} then)",
            f"Seats can be removed / cancelled until {business_time(self._cancellable_until)}",
        ]
        if self._suspended_for is not None:
            lines.append(f"Suspended for the unpaid renewal of {self._suspended_for}")
        if (notice_at := self._next_notice_at()) is not None:
            lines.append(f"Next expiry notice (if auto-renew is off): {business_time(notice_at)}")
        if self._cancelled_at is not None:
            lines.append(f"Cancelled at {business_time(self._cancelled_at)}")
        if self._expired_at is not None:
            lines.append(f"Expired at {business_time(self._expired_at)}")
        lines.extend(self._ops.markdown())
        if alerts := self._alerts.markdown():
            lines.append(alerts)
        workflow.set_current_details("\n\n".join(lines))
