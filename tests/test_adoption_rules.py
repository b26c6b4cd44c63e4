"""The pure rules of adoption (csp_core/subscriptions/adoption.py) and the price input of
`csp subscriptions adopt --price`: unit tests, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.subscriptions import SubscriptionInputError, parse_price
from csp_core.providers.port import ProviderSubscription, SubscriptionStatus
from csp_core.subscriptions.adoption import (
    AdoptionPlan,
    Candidate,
    PriceSource,
    Skipped,
    TakeOverResult,
    UnitPrice,
    adoption_report,
    not_live,
    purchase_dates,
    term_and_cycle,
)
from csp_core.subscriptions.values import SubscriptionStart

BOUGHT = datetime(2026, 11, 19, 18, 30, tzinfo=UTC)


def provider_sub(**changes: object) -> ProviderSubscription:
    fields: dict[str, object] = dict(
        subscription_id="sub-1",
        offer_id="CFQ7TTC0LH18:0001:CFQ7TTC0K59S",
        quantity=8,
        status=SubscriptionStatus.ACTIVE,
        term_duration="P1Y",
        billing_cycle="monthly",
        creation_date=BOUGHT,
        effective_start_date=BOUGHT,
    )
    fields.update(changes)
    return ProviderSubscription.model_validate(fields)


def candidate(sub_id: str) -> Candidate:
    start = SubscriptionStart(
        subscription_id=sub_id,
        tenant_id="tid",
        domain="northwind.onmicrosoft.com",
        reseller_id="RSL-042",
        reseller_name="Integradora",
        reseller_email="c@i.mx",
        company_name="Northwind",
        sku="CFQ7TTC0LH18:0001",
        product_name="Microsoft 365 Business Basic",
        seats=8,
        term="P1Y",
        billing_cycle="monthly",
        unit_price=Decimal("129.00"),
        purchased_at=BOUGHT,
        term_end=BOUGHT + timedelta(days=364),
    )
    return Candidate(
        start=start,
        price=UnitPrice(amount=Decimal("129.00"), source=PriceSource.TENANT, seen_in="order A"),
        recorded_now=True,
    )


def test_only_active_subscriptions_are_live() -> None:
    assert not_live(provider_sub()) is None
    for status, reason in [
        (SubscriptionStatus.SUSPENDED, "suspended at the provider"),
        (SubscriptionStatus.PENDING, "still provisioning"),
        (SubscriptionStatus.DELETED, "cancelled at the provider"),
        (SubscriptionStatus.EXPIRED, "expired at the provider"),
        (SubscriptionStatus.DISABLED, "disabled at the provider"),
    ]:
        assert reason in (not_live(provider_sub(status=status)) or ""), status


def test_the_window_runs_from_the_current_terms_start() -> None:
    renewed = BOUGHT + timedelta(days=365)
    assert purchase_dates(provider_sub(effective_start_date=renewed)) == (renewed, BOUGHT)
    assert purchase_dates(provider_sub(effective_start_date=None)) == (BOUGHT, BOUGHT)
    assert purchase_dates(provider_sub(effective_start_date=None, creation_date=None)) is None


def test_terms_and_cycles_we_do_not_sell_are_named() -> None:
    assert term_and_cycle(provider_sub()) == ("P1Y", "monthly")
    assert "term P5Y is not one" in str(term_and_cycle(provider_sub(term_duration="P5Y")))
    assert "billing cycle triennial" in str(term_and_cycle(provider_sub(billing_cycle="triennial")))


def test_the_report_says_what_happened_to_each_candidate() -> None:
    plan = AdoptionPlan(
        domain="northwind.onmicrosoft.com",
        candidates=[candidate("a"), candidate("b"), candidate("c")],
        skipped=[Skipped(subscription_id="d", reason="cancelled at the provider")],
    )

    report = adoption_report(
        plan, [TakeOverResult.ADOPTED, TakeOverResult.MANAGED, TakeOverResult.ENDED]
    )

    [adopted] = report.adopted
    assert adopted.subscription_id == "a"
    assert adopted.cancellable_until == BOUGHT + timedelta(hours=168)
    assert adopted.price_source == "as last sold (order A)"
    assert report.already_managed == ["b"]
    assert [s.subscription_id for s in report.skipped] == ["d", "c"]
    assert "its workflow has completed" in report.skipped[1].reason
    assert report.summary() == "northwind.onmicrosoft.com: 1 adopted, 1 already managed, 2 skipped"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CFQ7TTC0LH18:0001=129", ("CFQ7TTC0LH18:0001", Decimal("129.00"))),
        ("cfq7ttc0lh18:0001=129.5", ("CFQ7TTC0LH18:0001", Decimal("129.50"))),
        ("CFQ7TTC0LH18:0001:CFQ7TTC0K59S=99.99", ("CFQ7TTC0LH18:0001", Decimal("99.99"))),
    ],
)
def test_a_price_is_a_sku_and_an_amount_in_mxn(value: str, expected: tuple[str, Decimal]) -> None:
    assert parse_price(value) == expected


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("129.00", "must be PRODUCT:SKU=MXN"),
        ("CFQ7TTC0LH18=129", "must be PRODUCT:SKU=MXN"),
        ("CFQ7TTC0LH18:0001=", "greater than 0"),
        ("CFQ7TTC0LH18:0001=0", "greater than 0"),
        ("CFQ7TTC0LH18:0001=-5", "greater than 0"),
        ("CFQ7TTC0LH18:0001=1.005", "at most 2 decimal places"),
        ("CFQ7TTC0LH18:0001=NaN", "greater than 0"),
        ("CFQ7TTC0LH18:0001=1e12", "at most 9,999,999,999.99"),
    ],
)
def test_a_bad_price_names_the_option_and_the_rule(value: str, rule: str) -> None:
    with pytest.raises(SubscriptionInputError) as refused:
        parse_price(value)
    assert str(refused.value).startswith("--price: ") and rule in str(refused.value)
