"""Search attributes: part of the public contract (DESIGN.md). Ops filter the Web UI on these.

Only business keys live here: no PII beyond the tenant domain, never a secret.
"""

from temporalio.common import SearchAttributeKey

ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
RESELLER_ID = SearchAttributeKey.for_keyword("ResellerId")
CUSTOMER_DOMAIN = SearchAttributeKey.for_keyword("CustomerDomain")
ORDER_STAGE = SearchAttributeKey.for_keyword("OrderStage")
REMINDER_COUNT = SearchAttributeKey.for_int("ReminderCount")
ACCEPTANCE_DEADLINE = SearchAttributeKey.for_datetime("AcceptanceDeadline")

SUBSCRIPTION_ID = SearchAttributeKey.for_keyword("SubscriptionId")
BILLING_PERIOD = SearchAttributeKey.for_keyword("BillingPeriod")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
ESCALATION_LEVEL = SearchAttributeKey.for_int("EscalationLevel")
PAYMENT_DUE_AT = SearchAttributeKey.for_datetime("PaymentDueAt")

# The subscription workflow (one per license), beside SubscriptionId, CustomerDomain, ResellerId.
SUBSCRIPTION_STATUS = SearchAttributeKey.for_keyword("SubscriptionStatus")
SEATS = SearchAttributeKey.for_int("Seats")
AUTO_RENEW = SearchAttributeKey.for_bool("AutoRenew")
CANCELLABLE_UNTIL = SearchAttributeKey.for_datetime("CancellableUntil")
# The term's last day as the provider dates it, YYYY-MM-DD (ISO order is date order, and
# `TermEndsOn STARTS_WITH '2027-11'` lists a month). A Keyword, not a Datetime: SQL visibility
# (the dev server, PostgreSQL) allows 3 Datetime attributes, taken by AcceptanceDeadline,
# PaymentDueAt and CancellableUntil.
TERM_ENDS_ON = SearchAttributeKey.for_keyword("TermEndsOn")

# Any workflow: what needs a person (csp_core.stages.OpsAttention values); unset when nothing.
OPS_ATTENTION = SearchAttributeKey.for_keyword_list("OpsAttention")

ALL = [
    ORDER_ID,
    RESELLER_ID,
    CUSTOMER_DOMAIN,
    ORDER_STAGE,
    REMINDER_COUNT,
    ACCEPTANCE_DEADLINE,
    SUBSCRIPTION_ID,
    BILLING_PERIOD,
    PAYMENT_STATUS,
    ESCALATION_LEVEL,
    PAYMENT_DUE_AT,
    SUBSCRIPTION_STATUS,
    SEATS,
    AUTO_RENEW,
    CANCELLABLE_UNTIL,
    TERM_ENDS_ON,
    OPS_ATTENTION,
]

_CLI_TYPES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


def dev_server_args() -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    args: list[str] = []
    for key in ALL:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return args
