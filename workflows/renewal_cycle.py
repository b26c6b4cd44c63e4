"""The monthly renewal cycle: a period's charges recorded, one payment workflow started each.

RenewalCycleWorkflow (started on day 1 by a Schedule, or by hand for a period) records the
period's charges and starts one RenewalPaymentWorkflow (workflows/renewal.py) per open charge,
page by page, with continue-as-new keeping its history bounded. A charge that cannot be prepared
or started is reported (OpsAttention CHARGE_FAILED) and the others proceed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.renewal import RenewalActivities
    from csp_core.renewals.billing import period_of
    from csp_core.renewals.values import (
        MAX_REPORTED_FAILURES,
        ChargeFailure,
        CyclePage,
        CycleRequest,
        CycleResult,
        PreparedCharges,
    )
    from csp_core.stages import OpsAttention
    from workflows.common import OpsAlerts

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# The cycle's activities only touch the registry and Temporal: retry them patiently.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=10))

# Patch: the cycle records charges with `prepare_period_charges`, which names the charges it
# could not record; bad charges are reported (OpsAttention CHARGE_FAILED), the others proceed.
CYCLE_REPORTS_BAD_CHARGES = "cycle-reports-bad-charges"


@workflow.defn
class RenewalCycleWorkflow:
    @workflow.run
    async def run(self, request: CycleRequest) -> CycleResult:
        period = request.period or self._scheduled_period(request)
        reports = workflow.patched(CYCLE_REPORTS_BAD_CHARGES)
        self._alerts = OpsAlerts()
        self._failed = list(request.failed)
        self._failed_count = request.failed_count
        if reports and self._failed_count:
            self._alerts.raise_(OpsAttention.CHARGE_FAILED)  # carried over continue-as-new
        prepared = request.charges_owed
        if not request.charges_prepared:
            workflow.set_current_details(f"Recording the renewal charges of **{period}**.")
            if reports:
                outcome: PreparedCharges = await workflow.execute_activity_method(
                    RenewalActivities.prepare_period_charges,
                    args=[period, request.policy],
                    summary=f"Record charges {period}",
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RETRY,
                )
                prepared = outcome.recorded
                self._report(outcome.failed)
            else:
                prepared = await workflow.execute_activity_method(
                    RenewalActivities.prepare_charges,
                    args=[period, request.policy],
                    summary=f"Record charges {period}",
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RETRY,
                )
        after_id, started = request.after_id, request.started
        for _ in range(request.pages_per_run):
            workflow.set_current_details(
                self._details(f"Period **{period}**: {started} renewal workflow(s) started so far.")
            )
            page: CyclePage = await workflow.execute_activity_method(
                RenewalActivities.start_renewals_page,
                args=[period, request.policy, after_id, request.page_size],
                summary=f"Start renewals after charge {after_id}",
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            if reports:
                self._report(page.failed)
            if page.seen == 0:
                workflow.set_current_details(
                    self._details(
                        f"Period **{period}** done: {started} renewal workflow(s) started."
                    )
                )
                return CycleResult(
                    period=period,
                    charges_prepared=prepared,
                    renewals_started=started,
                    failed=self._failed,
                    failed_count=self._failed_count,
                )
            after_id, started = page.last_id, started + page.started
        workflow.continue_as_new(
            request.model_copy(
                update={
                    "period": period,
                    "after_id": after_id,
                    "started": started,
                    "charges_prepared": True,
                    "charges_owed": prepared,
                    "failed": self._failed,
                    "failed_count": self._failed_count,
                }
            )
        )

    def _report(self, failed: list[ChargeFailure]) -> None:
        """Bad charges are named (up to a bound), counted, and flagged for ops."""
        if not failed:
            return
        room = MAX_REPORTED_FAILURES - len(self._failed)
        self._failed.extend(failed[: max(room, 0)])
        self._failed_count += len(failed)
        self._alerts.raise_(OpsAttention.CHARGE_FAILED)
        for failure in failed:
            workflow.logger.warning(
                "renewal charge %s failed: %s", failure.subscription_id, failure.reason
            )

    def _details(self, headline: str) -> str:
        if not self._failed_count:
            return headline
        listed = "\n".join(f"- `{f.subscription_id}`: {f.reason}" for f in self._failed[:20])
        if self._failed_count > len(self._failed[:20]):
            listed += f"\n- … {self._failed_count - len(self._failed[:20])} more (see the result)"
        return "\n\n".join(
            [
                headline,
                self._alerts.markdown(),
                f"{self._failed_count} charge(s) could not be prepared or started; the others "
                f"proceed:\n{listed}",
            ]
        )

    @staticmethod
    def _scheduled_period(request: CycleRequest) -> str:
        # A backfilled run starts today but is for the period it was scheduled in.
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        return period_of(scheduled or workflow.now(), request.policy.timezone)
