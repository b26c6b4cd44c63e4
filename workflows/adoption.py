"""SubscriptionAdoptionWorkflow: bring a tenant's existing subscriptions under a
SubscriptionWorkflow each, with their real purchase dates.

Short-lived, one per tenant at a time (id `adopt-<domain>`): the provider's credentials live on
the worker, so the listing runs here, not in the CLI. Adopting twice changes nothing: known
subscriptions are kept as recorded, and a running SubscriptionWorkflow is left alone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.adoption import UNKNOWN_TENANT, AdoptionActivities
    from csp_core.subscriptions.adoption import (
        AdoptionPlan,
        AdoptionReport,
        AdoptionRequest,
        Candidate,
        TakeOverResult,
        adoption_report,
    )

# The caller waits for the report: retry provider and Temporal hiccups for a few minutes, then
# fail with the last reason (adopting again later is safe).
ADOPTION_STEP: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(minutes=2),
    schedule_to_close_timeout=timedelta(minutes=5),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=[UNKNOWN_TENANT],
    ),
)


@workflow.defn
class SubscriptionAdoptionWorkflow:
    @workflow.run
    async def run(self, request: AdoptionRequest) -> AdoptionReport:
        workflow.set_current_details(f"Reading the subscriptions of **{request.domain}**")
        plan: AdoptionPlan = await workflow.execute_activity_method(
            AdoptionActivities.survey_tenant,
            request,
            summary=f"List {request.domain} at the provider",
            **ADOPTION_STEP,
        )
        results = await asyncio.gather(*(self._take_over(c) for c in plan.candidates))
        report = adoption_report(plan, results)
        workflow.set_current_details(report.summary())
        return report

    async def _take_over(self, candidate: Candidate) -> TakeOverResult:
        start = candidate.start
        return await workflow.execute_activity_method(
            AdoptionActivities.take_over,
            start,
            summary=f"Take over {start.product_name} ({start.subscription_id})"[:200],
            **ADOPTION_STEP,
        )
