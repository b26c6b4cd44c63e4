"""The e-mails the product sends, in Spanish (es-MX), built by pure functions.

No I/O and no clock: every instant comes in as an aware datetime and is shown in the business
time zone, and every idempotency key comes from the caller, so a workflow can build the same
e-mail twice (on replay or retry) and get the same e-mail. Messages go to the reseller, who
forwards what concerns the client; ops is copied where a person has to act.

One module per capability (orders, renewals, subscriptions) over the shared wording; ops tasks'
e-mails live in `csp_core.notifications.ops_tasks`.
"""

from csp_core.notifications.messages.orders import (
    OrderLine,
    acceptance_expired,
    acceptance_reminder,
    order_active,
    order_cancelled,
    order_failed,
    partner_invitation,
)
from csp_core.notifications.messages.renewals import (
    RenewalDetails,
    payment_received,
    renewal_at_risk,
    renewal_escalation,
    renewal_final_notice,
    renewal_notice,
    renewal_partial_payment,
    renewal_reactivated,
    renewal_reactivation_failed,
    renewal_reminder,
    renewal_suspended,
    renewal_suspension_failed,
)
from csp_core.notifications.messages.subscriptions import (
    TermDetails,
    subscription_cancelled,
    subscription_expired,
    subscription_expiring,
    subscription_renewed,
)
from csp_core.notifications.messages.wording import (
    ADMIN_CENTER_URL,
    SIGNATURE,
    AwareDatetime,
    Email,
    EmailKind,
)

__all__ = [
    "ADMIN_CENTER_URL",
    "SIGNATURE",
    "AwareDatetime",
    "Email",
    "EmailKind",
    "OrderLine",
    "RenewalDetails",
    "TermDetails",
    "acceptance_expired",
    "acceptance_reminder",
    "order_active",
    "order_cancelled",
    "order_failed",
    "partner_invitation",
    "payment_received",
    "renewal_at_risk",
    "renewal_escalation",
    "renewal_final_notice",
    "renewal_notice",
    "renewal_partial_payment",
    "renewal_reactivated",
    "renewal_reactivation_failed",
    "renewal_reminder",
    "renewal_suspended",
    "renewal_suspension_failed",
    "subscription_cancelled",
    "subscription_expired",
    "subscription_expiring",
    "subscription_renewed",
]
