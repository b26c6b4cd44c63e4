"""E-mail notifications: es-MX message builders, the Mailer port and its SMTP adapter.

The builders and the MIME form (mime.py) are pure and importable anywhere; the mailer names are
loaded lazily so that importing the builders does not pull in aiosmtplib and structlog.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from csp_core.notifications.messages import (
    Email,
    EmailKind,
    OrderLine,
    RenewalDetails,
    acceptance_expired,
    acceptance_reminder,
    order_active,
    order_cancelled,
    order_failed,
    partner_invitation,
    payment_received,
    renewal_at_risk,
    renewal_escalation,
    renewal_final_notice,
    renewal_notice,
    renewal_reactivated,
    renewal_reminder,
    renewal_suspended,
)
from csp_core.notifications.mime import build_message, message_id_for

if TYPE_CHECKING:
    from csp_core.notifications.mailer import (
        MailDeliveryError,
        Mailer,
        RecordingMailer,
        SmtpMailer,
    )

# E-mail never holds business state: a notice that cannot be delivered (SMTP outage) is retried
# in the background for this long, then flagged to ops as undeliverable.
NOTICE_RETRY_HORIZON = timedelta(days=3)

_MAILER_NAMES = {
    "MailDeliveryError",
    "Mailer",
    "RecordingMailer",
    "SmtpMailer",
}


def __getattr__(name: str) -> Any:
    if name in _MAILER_NAMES:
        from csp_core.notifications import mailer

        return getattr(mailer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NOTICE_RETRY_HORIZON",
    "Email",
    "EmailKind",
    "MailDeliveryError",
    "Mailer",
    "OrderLine",
    "RecordingMailer",
    "RenewalDetails",
    "SmtpMailer",
    "acceptance_expired",
    "acceptance_reminder",
    "build_message",
    "message_id_for",
    "order_active",
    "order_cancelled",
    "order_failed",
    "partner_invitation",
    "payment_received",
    "renewal_at_risk",
    "renewal_escalation",
    "renewal_final_notice",
    "renewal_notice",
    "renewal_reactivated",
    "renewal_reminder",
    "renewal_suspended",
]
