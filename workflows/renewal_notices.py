"""A renewal's notices under the `renewal-lean` patch (workflows/renewal.py): sent beside the
process by an ordinary activity, as BackgroundNotices sends them, without asking the
`background-notices` patch again (the lean patch implies it; each patch asked costs a marker
and a search-attribute upsert in every new history).

Not by local activity: a local activity runs inside the workflow task, and when that task
times out on a loaded worker (the server reschedules it), the e-mail is sent again by the next
attempt while the first may still be on its way: measured, 7 duplicate notices in 1,000 on the
shared benchmark box. An activity's attempts never overlap like that."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.common import BackgroundNotices


class RenewalNotices(BackgroundNotices):
    """BackgroundNotices that skips asking its patch once `lean` is set, and can hand the
    activity's result back (`on_result`: the opening notice reports the payment it saw)."""

    lean = False

    async def send(
        self,
        activity: Callable[..., Any],
        notice: object,
        *,
        key: str,
        summary: str,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        if not self.lean:
            await super().send(activity, notice, key=key, summary=summary)
            return
        self._pending += 1
        asyncio.ensure_future(self._deliver(activity, notice, key, summary, on_result))
