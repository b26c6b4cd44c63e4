"""A renewal's payment as the registry shows it (blocking: run in a thread, one trip each):
the look-up the workflow's steps make (find_payment), and the opening notice's look-up with
its claim of the e-mail ledger's row (send_opening_notice)."""

from __future__ import annotations

from activities.common import claim_notice
from csp_core.notifications import messages
from csp_core.registry import NotificationRecord, Registry
from csp_core.renewals.values import PaymentSeen, RenewalCharge


def payment_seen(registry: Registry, subscription_id: str, period: str) -> PaymentSeen | None:
    """find_payment's look-up (blocking)."""
    charge = registry.get_charge(subscription_id, period)
    if charge is None:
        return None
    if charge.paid_at is not None:
        return PaymentSeen(
            reference=charge.payment_reference or "registered",
            paid_at=charge.paid_at,
            amount_paid=charge.amount_paid,
        )
    if charge.amount_paid > 0:
        payments = registry.list_payments(subscription_id, period)
        return PaymentSeen(
            reference=payments[-1].reference,
            paid_at=payments[-1].paid_at,
            amount_paid=charge.amount_paid,
            settled=False,
        )
    return None


def look_up_then_claim(
    registry: Registry, email: messages.Email, charge: RenewalCharge, *, first_attempt: bool
) -> tuple[PaymentSeen | None, NotificationRecord | None]:
    """The opening notice's payment look-up, then its claim of the e-mail ledger's row, in one
    trip to a thread (blocking). No claim when the charge is settled before the first attempt
    claimed anything (a later attempt's row may be on its way already: it is sent)."""
    seen = payment_seen(registry, charge.subscription_id, charge.period)
    if seen is not None and seen.settled and first_attempt:
        return seen, None
    claimed = claim_notice(
        registry, email, subscription_id=charge.subscription_id, period=charge.period
    )
    return seen, claimed
