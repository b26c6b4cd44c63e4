"""A renewal's notices, first tried by local activity: the e-mail goes out within the workflow
task that decides it, so a renewal that opens (or takes a ladder step) costs one marker in its
history and no extra workflow task, instead of an activity's six events and a second task to
learn it was sent. Still beside the process (nothing waits on it). A first attempt that fails
for a reason that may pass (the mail server away) hands the notice to an ordinary activity,
retried by the server for days at no cost to the history (NOTICE_CALL); a refusal for good is
flagged at once, as before. Only renewals started under the `renewal-lean` patch
(workflows/renewal.py) send this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.common import NOTICE_UNDELIVERABLE
    from csp_core.stages import OpsAttention
    from workflows.common import NOTICE_CALL, BackgroundNotices

# One attempt: retries are the ordinary activity's (a local activity's retries after a backoff
# would each add a timer, a task and a marker to the history).
FIRST_ATTEMPT: dict[str, Any] = dict(
    start_to_close_timeout=NOTICE_CALL["start_to_close_timeout"],
    retry_policy=RetryPolicy(maximum_attempts=1),
)


class RenewalNotices(BackgroundNotices):
    """BackgroundNotices whose notices run as local activities once `local` is set."""

    local = False

    async def send(
        self, activity: Callable[..., Any], notice: object, *, key: str, summary: str
    ) -> None:
        if not self.local:
            await super().send(activity, notice, key=key, summary=summary)
            return
        self._pending += 1
        asyncio.ensure_future(self._deliver_locally(activity, notice, key, summary))

    async def _deliver_locally(
        self, activity: Callable[..., Any], notice: object, key: str, summary: str
    ) -> None:
        try:
            try:
                await workflow.execute_local_activity_method(
                    activity, notice, summary=summary, **FIRST_ATTEMPT
                )
                return
            except FailureError as err:  # a local activity's failure may arrive unwrapped
                if _refused_for_good(err):
                    self._flag(key, err)
                    return
            try:
                await workflow.execute_activity_method(
                    activity, notice, summary=summary, **NOTICE_CALL
                )
            except ActivityError as err:
                self._flag(key, err)
        finally:
            self._pending -= 1

    def _flag(self, key: str, err: FailureError) -> None:
        """As BackgroundNotices does: named for ops, flagged, the details refreshed."""
        workflow.logger.warning("notice %s undeliverable: %s", key, err.cause or err)
        self.undeliverable.append(key)
        self._alerts.raise_(OpsAttention.NOTICE_UNDELIVERABLE)
        if self._on_change is not None:
            self._on_change()


def _refused_for_good(err: FailureError) -> bool:
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.type == NOTICE_UNDELIVERABLE
