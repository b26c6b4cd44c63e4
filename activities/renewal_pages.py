"""The renewal cycle's registry work, a page at a time (blocking: run in a thread, one trip per
page): billing a page of subscriptions, and reading a page of open charges with who each is
about. One charge's bad data is named and skipped; anything else fails the page's activity,
which Temporal retries."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.exc import DataError, IntegrityError

from csp_core.registry import (
    ChargeContext,
    ChargeRecord,
    Registry,
    RegistryError,
    SubscriptionRecord,
)
from csp_core.renewals.billing import RenewalPolicy, owes_charge
from csp_core.renewals.values import ChargeFailure

log = structlog.get_logger("activities.renewal")

# What one charge's bad data raises (skip it, report it). Anything else (the database or
# Temporal unreachable, a timeout) fails the activity, and Temporal retries the page.
CHARGE_DATA_ERRORS = (ValueError, ArithmeticError, RegistryError, IntegrityError, DataError)


def charge_failure(subscription_id: str, err: Exception) -> ChargeFailure:
    if not isinstance(err, CHARGE_DATA_ERRORS):
        raise err
    reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    log.warning("renewal charge skipped", subscription_id=subscription_id, reason=reason)
    return ChargeFailure(subscription_id=subscription_id, reason=reason)


def bill_page(
    registry: Registry,
    subs: list[SubscriptionRecord],
    period: str,
    policy: RenewalPolicy,
    starts_at: datetime,
    due_at: datetime,
) -> tuple[int, list[ChargeFailure]]:
    """Record the period's charge of each subscription that owes one: the page in one
    transaction, each charge behind its own savepoint (a bad one is named and skipped)."""
    failed: list[ChargeFailure] = []
    owing = []
    for sub in subs:
        try:
            if owes_charge(sub.billing_cycle, sub.activated_at, period, policy):
                owing.append(sub.subscription_id)
        except Exception as err:
            failed.append(charge_failure(sub.subscription_id, err))
    # Seats in force at the period's start × unit price, plus the seat changes' prorations not
    # billed yet (the registry's ledger). charge_failure raises what is not one charge's fault
    # (the database unreachable): the page's transaction rolls back and the activity retries.
    recorded = registry.bill_periods(
        owing,
        period,
        starts_at,
        due_at,
        on_error=lambda subscription_id, err: failed.append(charge_failure(subscription_id, err)),
    )
    return recorded, failed


def open_page(
    registry: Registry, period: str, after_id: int, limit: int
) -> tuple[list[ChargeRecord], dict[str, ChargeContext | Exception]]:
    """A page of open charges and who each is about: two queries for the whole page."""
    charges = registry.list_open_charges(period, after_id, limit)
    contexts: dict[str, ChargeContext | Exception] = {}
    try:
        contexts.update(registry.charge_contexts([c.subscription_id for c in charges]))
    except CHARGE_DATA_ERRORS:
        # Bad data somewhere in the page: look each one up, so the bad one is named.
        for c in charges:
            try:
                contexts[c.subscription_id] = registry.charge_context(c.subscription_id)
            except CHARGE_DATA_ERRORS as err:
                contexts[c.subscription_id] = err
    return charges, contexts
