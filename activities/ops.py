"""Activities of ops tasks (workflows/ops_task.py): the e-mails that ask ops to do an operation
by hand at the provider, remind them, escalate when it is overdue, withdraw it, and tell the
reseller when a change they asked for was not made. Each sent once (the e-mail ledger)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from temporalio import activity

from activities.common import send_once
from csp_core.notifications.mailer import Mailer
from csp_core.notifications.ops_tasks import ops_task_email
from csp_core.ops.tasks import OpsTaskNotice
from csp_core.registry import Registry
from csp_core.timezones import DEFAULT_BUSINESS_TIMEZONE, zone

log = structlog.get_logger(__name__)


@dataclass
class OpsActivities:
    registry: Registry
    mailer: Mailer
    ops_email: str
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE

    @activity.defn
    async def notify_ops_task(self, notice: OpsTaskNotice) -> None:
        email = ops_task_email(notice, self.ops_email, tz=zone(self.business_timezone))
        task = notice.task
        if not await send_once(
            self.registry,
            self.mailer,
            email,
            subscription_id=task.subscription_id,
            period=task.period,
        ):
            log.info("notification_already_sent", key=email.key)
