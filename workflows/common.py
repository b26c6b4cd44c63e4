"""Workflow-side parts every capability shares: ops attention flags and background notices.

Business state never waits on an e-mail: a notice is sent by its own activity running beside
the process (retried for days through an SMTP outage, not retried after a permanent refusal),
and a notice that cannot be delivered is flagged for ops instead of failing the workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.common import NOTICE_UNDELIVERABLE
    from csp_core.notifications import NOTICE_RETRY_HORIZON
    from csp_core.stages import OpsAttention
    from temporalutil import search_attributes as sa

# Patch: notices run in the background; histories before it awaited each notice in line.
BACKGROUND_NOTICES = "background-notices"

NOTICE_CALL: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=NOTICE_RETRY_HORIZON,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=10),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(hours=1),
        non_retryable_error_types=[NOTICE_UNDELIVERABLE],
    ),
)


class OpsAlerts:
    """The workflow's `OpsAttention` search attribute: what needs a person, kept as a set."""

    def __init__(self) -> None:
        self.raised: set[OpsAttention] = set()

    def raise_(self, reason: OpsAttention) -> None:
        if reason not in self.raised:
            self.raised.add(reason)
            self._upsert()

    def clear(self, reason: OpsAttention) -> None:
        if reason in self.raised:
            self.raised.discard(reason)
            self._upsert()

    def _upsert(self) -> None:
        values = sorted(r.value for r in self.raised)
        workflow.upsert_search_attributes(
            [sa.OPS_ATTENTION.value_set(values) if values else sa.OPS_ATTENTION.value_unset()]
        )

    def markdown(self) -> str:
        """A line for the current details, empty when nothing needs a person."""
        if not self.raised:
            return ""
        return "**Needs ops:** " + ", ".join(sorted(r.value for r in self.raised))


class BackgroundNotices:
    """Sends notices beside the process; `drain()` before the workflow returns."""

    def __init__(self, alerts: OpsAlerts, on_change: Callable[[], None] | None = None) -> None:
        self._alerts = alerts
        self._on_change = on_change
        self._pending = 0
        self.undeliverable: list[str] = []  # notice keys

    async def send(
        self, activity: Callable[..., Any], notice: object, *, key: str, summary: str
    ) -> None:
        """Start the notice's activity. Histories recorded before the patch awaited it here."""
        if not workflow.patched(BACKGROUND_NOTICES):
            await workflow.execute_activity_method(activity, notice, summary=summary, **NOTICE_CALL)
            return
        self._pending += 1
        asyncio.ensure_future(self._deliver(activity, notice, key, summary))

    async def _deliver(
        self,
        activity: Callable[..., Any],
        notice: object,
        key: str,
        summary: str,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        try:
            result = await workflow.execute_activity_method(
                activity, notice, summary=summary, **NOTICE_CALL
            )
            if on_result is not None:
                on_result(result)
        except ActivityError as err:
            workflow.logger.warning("notice %s undeliverable: %s", key, err.cause or err)
            self.undeliverable.append(key)
            self._alerts.raise_(OpsAttention.NOTICE_UNDELIVERABLE)
            if self._on_change is not None:
                self._on_change()
        finally:
            self._pending -= 1

    @property
    def idle(self) -> bool:
        """No notice is on its way (each was delivered or given up)."""
        return self._pending == 0

    async def drain(self) -> None:
        """Wait until every notice was delivered or given up (never fails)."""
        await workflow.wait_condition(lambda: self._pending == 0)
