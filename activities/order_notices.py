"""The order workflow's e-mails to the reseller, rendered in es-MX from its notices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from csp_core.notifications import messages
from csp_core.orders.failures import OrderFailure
from csp_core.orders.provisioning import OrderNotice, OrderNoticeKind
from csp_core.timezones import zone

T = TypeVar("T")


async def render_order_notice(
    notice: OrderNotice,
    *,
    relationship_url: Callable[[], Awaitable[str]],
    business_timezone: str,
    ops_email: str,
) -> messages.Email:
    """The e-mail for `notice`; `relationship_url` is asked only by the notices that link to
    the provider's partner-acceptance page."""
    order = notice.order
    common = dict(
        key=notice.key,
        tz=zone(business_timezone),
        order_id=order.order_id,
        reseller_name=order.reseller.name,
        reseller_email=str(order.reseller.email),
        company_name=order.customer.company_name,
        domain=order.domain,
    )
    match notice.kind:
        case OrderNoticeKind.INVITATION:
            return messages.partner_invitation(
                relationship_url=await relationship_url(),
                deadline=_required(notice.deadline),
                **common,
            )
        case OrderNoticeKind.ACCEPTANCE_REMINDER:
            return messages.acceptance_reminder(
                relationship_url=await relationship_url(),
                reminder_number=_required(notice.reminder_number),
                deadline=_required(notice.deadline),
                **common,
            )
        case OrderNoticeKind.EXPIRED:
            return messages.acceptance_expired(deadline=_required(notice.deadline), **common)
        case OrderNoticeKind.ACTIVE:
            lines = [
                messages.OrderLine(
                    item.product_name, item.quantity, item.term.value, item.billing_cycle.value
                )
                for item in order.items
            ]
            return messages.order_active(
                lines=lines,
                tenant_created=notice.tenant_created,
                purchased_at=activity.info().current_attempt_scheduled_time,
                **common,
            )
        case OrderNoticeKind.CANCELLED:
            return messages.order_cancelled(reason=notice.reason or "", **common)
        case OrderNoticeKind.FAILED:
            # Notices queued before failure codes carry only the English reason.
            failure = notice.failure or OrderFailure.from_reason(
                notice.reason or "", domain=order.domain
            )
            return messages.order_failed(failure=failure, ops_email=ops_email, **common)
    raise ValueError(f"unknown notice kind {notice.kind}")


def _required(value: T | None) -> T:
    if value is None:
        raise ApplicationError("notice is missing a field", non_retryable=True)
    return value
