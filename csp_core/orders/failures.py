"""Why an order failed, as a domain value: a code the reseller's e-mail is written from, plus an
English detail for ops and logs (never shown to the reseller). Plain pydantic; no Temporal import.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class FailureCode(StrEnum):
    """What went wrong, in the terms of what the reseller can do about it."""

    DOMAIN_TAKEN = "domain_taken"  # create mode: the onmicrosoft.com prefix belongs to someone
    ORDER_CONFLICT = "order_conflict"  # the order id was used before with other content
    TENANT_CONFLICT = "tenant_conflict"  # the domain is recorded for another tenant id
    PROVIDER_REJECTED = "provider_rejected"  # the provider refused a request for good
    PROVISIONING_FAILED = "provisioning_failed"  # placed, then the provider failed to provision
    INTERNAL = "internal"  # anything else: a person must look at it

    @property
    def nothing_ordered(self) -> bool:
        """True when the failure is known to come before anything was ordered or charged."""
        return self in _BEFORE_ORDERING

    @property
    def ops_act(self) -> bool:
        """True when ops must look at the case (and the reseller should wait, not resubmit)."""
        return self not in _RESELLER_FIXES


_BEFORE_ORDERING = frozenset(
    {FailureCode.DOMAIN_TAKEN, FailureCode.ORDER_CONFLICT, FailureCode.TENANT_CONFLICT}
)
_RESELLER_FIXES = frozenset({FailureCode.DOMAIN_TAKEN, FailureCode.ORDER_CONFLICT})

# The ApplicationError types the order activities raise for good (activities/common.py
# `provider_failure`, activities/order.py), and the failure each one means.
_CODE_BY_ERROR_TYPE = {
    "ProviderRejected": FailureCode.PROVIDER_REJECTED,
    "ProvisioningFailed": FailureCode.PROVISIONING_FAILED,
    "TenantConflict": FailureCode.TENANT_CONFLICT,
    "OrderConflict": FailureCode.ORDER_CONFLICT,
}


class OrderFailure(BaseModel):
    """Why an order ended FAILED. Travels in workflow history: no secrets in `detail`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: FailureCode
    detail: Annotated[str, Field(max_length=2000)] = Field(
        default="", description="English, for ops and logs only; never in a reseller's e-mail"
    )
    domain: str | None = None
    provider_code: str | None = Field(
        default=None, description="The provider's error code, when it gave one"
    )

    @classmethod
    def from_error(
        cls,
        error_type: str | None,
        detail: str,
        *,
        domain: str | None = None,
        provider_code: str | None = None,
    ) -> OrderFailure:
        """The failure an activity's non-retryable ApplicationError (its `type`) stands for."""
        code = _CODE_BY_ERROR_TYPE.get(error_type or "", FailureCode.INTERNAL)
        return cls(code=code, detail=detail, domain=domain, provider_code=provider_code)

    @classmethod
    def from_reason(cls, reason: str, *, domain: str | None = None) -> OrderFailure:
        """Best reading of a free-text reason, as workflows recorded before failure codes
        existed pass it (their FAILED notice may still be retried by a newer worker)."""
        text = reason.lower()
        if "already taken" in text:
            code = FailureCode.DOMAIN_TAKEN
        elif "failed to provision" in text:
            code = FailureCode.PROVISIONING_FAILED
        elif "provider answered" in text:
            code = FailureCode.PROVIDER_REJECTED
        elif "recorded with different content" in text:
            code = FailureCode.ORDER_CONFLICT
        elif "already bound to tenant id" in text or "already registered as" in text:
            code = FailureCode.TENANT_CONFLICT
        else:
            code = FailureCode.INTERNAL
        return cls(code=code, detail=reason, domain=domain)
