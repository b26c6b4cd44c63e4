"""Stage and status vocabularies that are part of the public contract (search attribute values)."""

from enum import StrEnum


class OrderStage(StrEnum):
    RECEIVED = "RECEIVED"
    CREATING_TENANT = "CREATING_TENANT"
    LINKING_TENANT = "LINKING_TENANT"
    AWAITING_PARTNER_ACCEPTANCE = "AWAITING_PARTNER_ACCEPTANCE"
    PLACING_ORDER = "PLACING_ORDER"
    ACTIVATING = "ACTIVATING"
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in {self.ACTIVE, self.CANCELLED, self.EXPIRED, self.FAILED}

    @property
    def cancellable(self) -> bool:
        """An order can be cancelled until it has been placed with the provider."""
        return self in {
            self.RECEIVED,
            self.CREATING_TENANT,
            self.LINKING_TENANT,
            self.AWAITING_PARTNER_ACCEPTANCE,
        }


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    REMINDED = "REMINDED"
    ESCALATED = "ESCALATED"
    PAID = "PAID"
    AT_RISK = "AT_RISK"
    SUSPENDED = "SUSPENDED"
    REACTIVATED = "REACTIVATED"
    # The provider has no API for the suspension or reactivation due now: ops were asked to do
    # it by hand and confirm it (an ops task); SUSPENDED or REACTIVATED follow their confirmation.
    AWAITING_OPS = "AWAITING_OPS"


class OpsAttention(StrEnum):
    """Why a workflow needs a person: values of the `OpsAttention` search attribute (a keyword
    list), so `OpsAttention = 'NOTICE_UNDELIVERABLE'` lists every workflow with that problem."""

    NOTICE_UNDELIVERABLE = "NOTICE_UNDELIVERABLE"  # an e-mail could not be delivered
    PROVISIONING_SLOW = "PROVISIONING_SLOW"  # placed, not provisioned within the horizon
    CREDENTIALS_UNRECORDED = "CREDENTIALS_UNRECORDED"  # tenant created, registry not reachable
    REACTIVATION_FAILED = "REACTIVATION_FAILED"  # paid but still suspended at the provider
    SUSPENSION_FAILED = "SUSPENSION_FAILED"  # unpaid at the cutoff, could not be suspended
    CHARGE_FAILED = "CHARGE_FAILED"  # a renewal charge could not be prepared or started
    # An ops task is open: do the operation by hand at the provider, then confirm it
    # (`csp ops tasks`, `csp ops confirm`).
    OPS_ACTION_REQUIRED = "OPS_ACTION_REQUIRED"
    OPS_TASK_OVERDUE = "OPS_TASK_OVERDUE"  # an open ops task is past its deadline


class SubscriptionStatus(StrEnum):
    """Values of the `SubscriptionStatus` search attribute: where a license stands."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in {self.CANCELLED, self.EXPIRED}
