"""A subscription's terms as pure rules, pinned at their exact instants (the time-skipping tests
in test_subscription_lifecycle.py reach the same instants through the workflow), and the
Spanish e-mails about them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csp_core.notifications.messages import (
    TermDetails,
    subscription_expired,
    subscription_expiring,
    subscription_renewed,
)
from csp_core.orders.models import Term
from csp_core.stages import OpsAttention, SubscriptionStatus
from csp_core.subscriptions.terms import (
    EXPIRY_NOTICE_DAYS,
    expiry_notice_at,
    expiry_notices_ahead,
    next_term,
    term_end,
    term_end_instant,
    term_ends_on,
)
from csp_core.subscriptions.values import (
    KeptAnswer,
    SubscriptionCarry,
    SubscriptionDetails,
    SubscriptionStart,
    TermNotice,
    TermNoticeKind,
)
from csp_core.timezones import BUSINESS_TZ

PURCHASED = datetime(2026, 11, 2, 17, 30, tzinfo=UTC)
LAST_DAY = datetime(2027, 11, 1, tzinfo=UTC)  # Partner Center's commitmentEndDate


def test_the_term_ends_on_the_day_before_the_anniversary_and_is_over_at_the_anniversary() -> None:
    assert term_end(PURCHASED, Term.P1Y) == LAST_DAY
    assert term_ends_on(LAST_DAY) == "2027-11-01"
    # The anniversary at 00:00 UTC: 18:00 of the last day in Mexico City (UTC-6).
    assert term_end_instant(LAST_DAY) == datetime(2027, 11, 2, tzinfo=UTC)
    assert term_end_instant(LAST_DAY).astimezone(BUSINESS_TZ).hour == 18


def test_the_next_term_starts_at_the_anniversary_and_chains_year_after_year() -> None:
    anniversary = term_end_instant(LAST_DAY)
    started, ends = next_term(anniversary, Term.P1Y)
    assert (started, ends) == (anniversary, datetime(2028, 11, 1, tzinfo=UTC))
    assert term_end_instant(ends) == datetime(2028, 11, 2, tzinfo=UTC)
    monthly = next_term(datetime(2027, 1, 15, tzinfo=UTC), Term.P1M)
    assert monthly[1] == datetime(2027, 2, 14, tzinfo=UTC)


def test_expiry_notices_go_out_30_and_7_days_before_the_last_day_at_09_mexico_city() -> None:
    assert EXPIRY_NOTICE_DAYS == (30, 7)
    assert expiry_notice_at(LAST_DAY, 30, BUSINESS_TZ) == datetime(
        2027, 10, 2, 9, 0, tzinfo=BUSINESS_TZ
    )
    assert expiry_notice_at(LAST_DAY, 7, BUSINESS_TZ) == datetime(
        2027, 10, 25, 9, 0, tzinfo=BUSINESS_TZ
    )
    assert expiry_notice_at(LAST_DAY, 7, BUSINESS_TZ) == datetime(2027, 10, 25, 15, tzinfo=UTC)


def test_a_notice_is_ahead_until_its_instant_and_not_at_it() -> None:
    at_30 = expiry_notice_at(LAST_DAY, 30, BUSINESS_TZ)
    at_7 = expiry_notice_at(LAST_DAY, 7, BUSINESS_TZ)
    assert expiry_notices_ahead(LAST_DAY, PURCHASED, BUSINESS_TZ) == (30, 7)
    assert expiry_notices_ahead(LAST_DAY, at_30 - timedelta(seconds=1), BUSINESS_TZ) == (30, 7)
    assert expiry_notices_ahead(LAST_DAY, at_30, BUSINESS_TZ) == (7,)
    assert expiry_notices_ahead(LAST_DAY, at_7, BUSINESS_TZ) == ()
    # February's one-month term starts less than 30 days before its end: only the 7-day notice.
    started, ends = next_term(datetime(2027, 2, 15, tzinfo=UTC), Term.P1M)
    assert expiry_notices_ahead(ends, started, BUSINESS_TZ) == (7,)


def start() -> SubscriptionStart:
    return SubscriptionStart(
        subscription_id="a1b2c3d4-0000-4000-8000-000000000001",
        tenant_id="t-1",
        domain="contosomx.onmicrosoft.com",
        reseller_id="RSL-042",
        reseller_name="Integradora Norte SA de CV",
        reseller_email="compras@integradoranorte.mx",
        company_name="Contoso México SA de CV",
        order_id="ABS-2026-000123",
        sku="CFQ7TTC0LH18:0001",
        product_name="Microsoft 365 Business Basic",
        seats=10,
        term=Term.P1Y,
        billing_cycle="monthly",
        unit_price="129.00",
        purchased_at=PURCHASED,
        term_end=LAST_DAY,
    )


def test_notice_keys_are_stable_per_term_and_kind() -> None:
    def key(kind: TermNoticeKind, days: int | None = None, ends: datetime = LAST_DAY) -> str:
        notice = TermNotice(
            kind=kind,
            subscription=start(),
            seats=10,
            term_started_at=PURCHASED,
            term_ends_at=ends,
            days_before=days,
        )
        return notice.key

    prefix = "subscription-a1b2c3d4-0000-4000-8000-000000000001:term-2027-11-01"
    assert key(TermNoticeKind.EXPIRING, 30) == f"{prefix}:expiring-30d"
    assert key(TermNoticeKind.EXPIRING, 7) == f"{prefix}:expiring-7d"
    assert key(TermNoticeKind.EXPIRED) == f"{prefix}:expired"
    next_year = datetime(2028, 11, 1, tzinfo=UTC)
    assert key(TermNoticeKind.RENEWED, ends=next_year).endswith(":term-2028-11-01:renewed")


def test_the_carried_state_survives_the_wire_inside_the_start() -> None:
    """What continue-as-new hands over goes through JSON (the workflow's input)."""
    answer = SubscriptionDetails(
        subscription_id="s",
        domain="d",
        reseller_id="r",
        product_name="p",
        sku="k",
        status=SubscriptionStatus.ACTIVE,
        seats=15,
        term=Term.P1Y,
        billing_cycle="monthly",
        unit_price="129.00",
        auto_renew=True,
        term_started_at=PURCHASED,
        cancellable_until=PURCHASED + timedelta(hours=168),
        term_ends_at=LAST_DAY,
    )
    carried = SubscriptionCarry(
        status=SubscriptionStatus.SUSPENDED,
        seats=15,
        auto_renew=False,
        term_started_at=PURCHASED,
        term_ends_at=LAST_DAY,
        suspended_for="2027-03",
        notices_ahead=(7,),
        ops_attention=(OpsAttention.NOTICE_UNDELIVERABLE,),
        answers=(KeptAnswer(update_id="req-add-5", answer=answer),),
        renewals=1,
    )
    continued = start().model_copy(update={"carried": carried})

    assert SubscriptionStart.model_validate_json(continued.model_dump_json()) == continued
    assert start().carried is None


# --- the e-mails -----------------------------------------------------------------------------

ANNIVERSARY = term_end_instant(LAST_DAY)
RENEWED = TermDetails(
    subscription_id="a1b2c3d4-0000-4000-8000-000000000001",
    product_name="Microsoft 365 Business Basic",
    seats=12,
    company_name="Contoso México SA de CV",
    domain="contosomx.onmicrosoft.com",
    reseller_name="Integradora Norte SA de CV",
    reseller_email="compras@integradoranorte.mx",
    term="P1Y",
    billing_cycle="monthly",
    term_started_at=ANNIVERSARY,
    term_ends_at=datetime(2028, 11, 1, tzinfo=UTC),
)


def test_the_renewal_e_mail_names_the_new_term_and_its_168_hour_window_in_mexico_city() -> None:
    email = subscription_renewed(RENEWED, key="k")

    assert email.to == ["compras@integradoranorte.mx"] and email.kind == "subscription_renewed"
    assert "se renovó automáticamente" in email.text and "12 licencias" in email.text
    # Started 2027-11-02 00:00 UTC = 1 Nov 18:00 local; window until 8 Nov 18:00 local.
    assert "comenzó el 1 de noviembre de 2027, 18:00 h (hora del centro de México)" in email.text
    assert "hasta el 8 de noviembre de 2027, 18:00 h (hora del centro de México)" in email.text
    assert "termina el 1 de noviembre de 2028, 18:00 h" in email.text


def test_the_expiry_notice_says_when_it_ends_why_and_how_to_keep_it() -> None:
    term = RENEWED.model_copy(update={"term_started_at": PURCHASED, "term_ends_at": LAST_DAY})
    email = subscription_expiring(term, 7, key="k")

    assert email.subject.startswith("Su suscripción vence en 7 días")
    assert "vence el 1 de noviembre de 2027, 18:00 h (hora del centro de México)" in email.text
    assert "renovación automática está desactivada" in email.text
    assert "pídanos activar la renovación automática" in email.text
    suspended = subscription_expiring(term, 30, key="k", suspended_for="2027-09")
    assert "suspendida por falta de pago de la renovación de septiembre de 2027" in suspended.text
    assert "realice ese pago" in suspended.text


def test_the_expired_e_mail_says_no_renewal_charge_follows_and_how_to_buy_again() -> None:
    term = RENEWED.model_copy(update={"term_started_at": PURCHASED, "term_ends_at": LAST_DAY})
    email = subscription_expired(term, key="k")

    assert email.kind == "subscription_expired"
    assert "venció el 1 de noviembre de 2027, 18:00 h" in email.text
    assert "No se generarán nuevos cargos de renovación" in email.text
    assert "envíe un pedido nuevo para el dominio contosomx.onmicrosoft.com" in email.text
    owed = subscription_expired(term, key="k", suspended_for="2027-09")
    assert "suspendida por falta de pago" in owed.text and "se mantiene" in owed.text
