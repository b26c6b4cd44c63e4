"""Order input validation: every bad field is reported by its path and rule, in plain English."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csp_core.orders.models import (
    CreateTenant,
    LinkTenant,
    Order,
    OrderValidationError,
    TenantMode,
    parse_order,
)
from tests.support.mutations import Mutation, both, drop, put

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CREATE = "order-create.json"
LINK = "order-link-ours.json"  # two lines: P1Y/annual and P1M/monthly


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def duplicate_first_line(data: dict[str, Any]) -> None:
    line = copy.deepcopy(data["items"][0])
    line["quantity"] = 3
    data["items"].append(line)


def problems_of(raw: str | bytes | dict[str, Any]) -> list[str]:
    with pytest.raises(OrderValidationError) as caught:
        parse_order(raw)
    problems = caught.value.problems
    # The exception text (what the CLI prints) lists the same lines.
    for problem in problems:
        assert f"  - {problem}" in str(caught.value)
    return problems


# (case id, example file, mutation, expected field path, words of the rule it must state)
BAD_FIELDS: list[tuple[str, str, Mutation, str, list[str]]] = [
    (
        "sku-shape",
        CREATE,
        put("items.0.sku", "CFQ7TTC0LH18-0001"),
        "items.0.sku",
        ["must look like CFQ7TTC0LH18:0001", "12-character product id", "4-digit SKU id"],
    ),
    (
        "sku-lower-case",
        CREATE,
        put("items.0.sku", "cfq7ttc0lh18:0001"),
        "items.0.sku",
        ["must look like CFQ7TTC0LH18:0001"],
    ),
    (
        "order-id-leading-hyphen",
        CREATE,
        put("order_id", "-ABS-1"),
        "order_id",
        ["3-64 letters, digits, '-' or '_', starting with a letter or digit"],
    ),
    (
        "order-id-too-short",
        CREATE,
        put("order_id", "AB"),
        "order_id",
        ["3-64 letters, digits, '-' or '_'"],
    ),
    (
        "order-id-space",
        CREATE,
        put("order_id", "ABS 2026"),
        "order_id",
        ["3-64 letters, digits, '-' or '_'"],
    ),
    (
        "prefix-hyphen",
        CREATE,
        put("tenant.domain_prefix", "contoso-mx"),
        "tenant.domain_prefix",
        ["letters and digits only", "no hyphens"],
    ),
    (
        "prefix-accent",
        CREATE,
        put("tenant.domain_prefix", "méxico"),
        "tenant.domain_prefix",
        ["letters and digits only", "accents"],
    ),
    (
        "prefix-28-chars",
        CREATE,
        put("tenant.domain_prefix", "a" * 28),
        "tenant.domain_prefix",
        ["at most 27 characters", "got 28"],
    ),
    (
        "prefix-empty",
        CREATE,
        put("tenant.domain_prefix", "  "),
        "tenant.domain_prefix",
        ["must not be empty"],
    ),
    (
        "prefix-with-suffix",
        CREATE,
        put("tenant.domain_prefix", "contosomx.onmicrosoft.com"),
        "tenant.domain_prefix",
        ["only the prefix", "without .onmicrosoft.com"],
    ),
    (
        "link-domain-not-onmicrosoft",
        LINK,
        put("tenant.domain", "northwind.com.mx"),
        "tenant.domain",
        ["initial <prefix>.onmicrosoft.com domain"],
    ),
    (
        "link-domain-bad-prefix",
        LINK,
        put("tenant.domain", "north-wind.onmicrosoft.com"),
        "tenant.domain",
        ["the part before .onmicrosoft.com", "letters and digits only"],
    ),
    (
        "tenant-mode-unknown",
        CREATE,
        put("tenant.mode", "adopt"),
        "tenant.mode",
        ["must be 'create' or 'link'"],
    ),
    (
        "tenant-mode-missing",
        CREATE,
        drop("tenant.mode"),
        "tenant.mode",
        ["must be 'create' or 'link'"],
    ),
    (
        "quantity-zero",
        CREATE,
        put("items.0.quantity", 0),
        "items.0.quantity",
        ["whole number", "between 1 and 10000"],
    ),
    (
        "quantity-too-many",
        CREATE,
        put("items.0.quantity", 10_001),
        "items.0.quantity",
        ["between 1 and 10000"],
    ),
    (
        "quantity-as-text",
        CREATE,
        put("items.0.quantity", "10"),
        "items.0.quantity",
        ["between 1 and 10000", "not text"],
    ),
    (
        "quantity-fraction",
        CREATE,
        put("items.0.quantity", 2.5),
        "items.0.quantity",
        ["whole number"],
    ),
    (
        "p1m-billed-annually",
        CREATE,
        both(put("items.0.term", "P1M"), put("items.0.billing_cycle", "annual")),
        "items.0.billing_cycle",
        ["a P1M term can only be billed monthly"],
    ),
    (
        "term-unknown",
        CREATE,
        put("items.0.term", "P2Y"),
        "items.0.term",
        ["must be 'P1M', 'P1Y' or 'P3Y'"],
    ),
    (
        "billing-cycle-unknown",
        CREATE,
        put("items.0.billing_cycle", "weekly"),
        "items.0.billing_cycle",
        ["must be 'monthly' or 'annual'"],
    ),
    (
        "unit-price-zero",
        CREATE,
        put("items.0.unit_price", "0"),
        "items.0.unit_price",
        ["greater than 0"],
    ),
    (
        "unit-price-3-decimals",
        CREATE,
        put("items.0.unit_price", "129.005"),
        "items.0.unit_price",
        ["at most 2 decimal places"],
    ),
    (
        "unit-price-not-a-number",
        CREATE,
        put("items.0.unit_price", "ciento veinte"),
        "items.0.unit_price",
        ["amount in MXN"],
    ),
    (
        "duplicate-sku-lines",
        CREATE,
        duplicate_first_line,
        "items.1.sku",
        ["CFQ7TTC0LH18:0001 is already on items.0", "one line"],
    ),
    (
        "no-items",
        CREATE,
        put("items", []),
        "items",
        ["at least 1 item"],
    ),
    (
        "postal-code-4-digits",
        CREATE,
        put("customer.address.postal_code", "3100"),
        "customer.address.postal_code",
        ["a Mexican código postal has exactly 5 digits"],
    ),
    (
        "postal-code-letters",
        CREATE,
        put("customer.address.postal_code", "C1000"),
        "customer.address.postal_code",
        ["exactly 5 digits"],
    ),
    (
        "country-lower-case",
        CREATE,
        put("customer.address.country", "mx"),
        "customer.address.country",
        ["2-letter", "upper case", "MX"],
    ),
    (
        "contact-email",
        CREATE,
        put("customer.contact.email", "ana.lopez.contoso.mx"),
        "customer.contact.email",
        ["e-mail address", "@-sign"],
    ),
    (
        "reseller-email",
        CREATE,
        put("reseller.email", "compras@integradoranorte"),
        "reseller.email",
        ["e-mail address"],
    ),
    (
        "reseller-id",
        CREATE,
        put("reseller.id", "RSL 042"),
        "reseller.id",
        ["letters, digits, '-' or '_'"],
    ),
    (
        "company-name-blank",
        CREATE,
        put("customer.company_name", "   "),
        "customer.company_name",
        ["1-200 characters"],
    ),
    (
        "product-name-too-long",
        CREATE,
        put("items.0.product_name", "M" * 201),
        "items.0.product_name",
        ["1-200 characters"],
    ),
    (
        "city-null",
        CREATE,
        put("customer.address.city", None),
        "customer.address.city",
        ["text"],
    ),
    (
        "missing-customer",
        CREATE,
        drop("customer"),
        "customer",
        ["required"],
    ),
    (
        "missing-sku",
        CREATE,
        drop("items.0.sku"),
        "items.0.sku",
        ["required"],
    ),
    (
        "missing-contact-email",
        CREATE,
        drop("customer.contact.email"),
        "customer.contact.email",
        ["required"],
    ),
    (
        "unknown-top-level-field",
        CREATE,
        put("coupon", "PROMO10"),
        "coupon",
        ["not a field of the order"],
    ),
    (
        "unknown-item-field",
        CREATE,
        put("items.0.discount", "10"),
        "items.0.discount",
        ["not a field of the order"],
    ),
    (
        "field-of-other-tenant-mode",
        CREATE,
        put("tenant.domain", "contosomx.onmicrosoft.com"),
        "tenant.domain",
        ["not a field of the order"],
    ),
    (
        "items-not-a-list",
        CREATE,
        put("items", {"sku": "CFQ7TTC0LH18:0001"}),
        "items",
        ["must be a JSON list"],
    ),
    (
        "tenant-not-an-object",
        CREATE,
        put("tenant", "contosomx"),
        "tenant",
        ["must be a JSON object"],
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "field", "rule"),
    [
        pytest.param(name, mutate, field, rule, id=case)
        for case, name, mutate, field, rule in BAD_FIELDS
    ],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["dict", "json"])
def test_a_bad_field_is_named_with_its_rule(
    name: str, mutate: Mutation, field: str, rule: list[str], as_json: bool
) -> None:
    data = example(name)
    mutate(data)
    raw: str | dict[str, Any] = json.dumps(data, ensure_ascii=False) if as_json else data

    problems = problems_of(raw)

    assert len(problems) == 1, problems
    path, _, message = problems[0].partition(": ")
    assert path == field
    for words in rule:
        assert words in message
    # Plain English, not pydantic's internals.
    for jargon in ("Input should", "String should", "pattern", "Value error", "type=", "^["):
        assert jargon not in message


def test_every_bad_field_is_reported_at_once() -> None:
    data = example(CREATE)
    put("order_id", "x")(data)
    put("tenant.domain_prefix", "contoso-mx")(data)
    put("items.0.quantity", "10")(data)
    put("customer.address.country", "mx")(data)

    problems = problems_of(data)

    assert sorted(p.partition(":")[0] for p in problems) == [
        "customer.address.country",
        "items.0.quantity",
        "order_id",
        "tenant.domain_prefix",
    ]


def test_the_second_line_is_named_by_its_index() -> None:
    data = example(LINK)
    put("items.1.billing_cycle", "annual")(data)  # line 1 is P1M

    assert problems_of(data) == ["items.1.billing_cycle: a P1M term can only be billed monthly"]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"order_id": "ABS-1",\n "reseller": }', "line 2 column 14"),
        (b'{"order_id": "ABS-1"', "line 1 column 20"),
        (b"", "line 1 column 0"),
        (b"order_id=ABS-1", "line 1 column 1"),
    ],
    ids=["missing-value", "truncated", "empty", "not-json"],
)
def test_invalid_json_says_where(raw: bytes, where: str) -> None:
    problems = problems_of(raw)

    assert len(problems) == 1
    assert problems[0].startswith("order: not valid JSON")
    assert where in problems[0]


def test_a_json_list_is_not_an_order() -> None:
    assert problems_of(b"[]") == ["order: must be a JSON object {...}"]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_the_examples_are_valid(name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()

    order = parse_order(raw)

    assert order == parse_order(json.loads(raw))
    assert order.workflow_id == f"order-{order.order_id}"
    assert order.domain.endswith(".onmicrosoft.com")


def test_the_examples_cover_both_tenant_modes() -> None:
    modes = {parse_order((EXAMPLES / n).read_bytes()).tenant.mode for n in (CREATE, LINK)}

    assert modes == {TenantMode.CREATE, TenantMode.LINK}


def test_create_prefix_is_normalised_to_lower_case() -> None:
    data = example(CREATE)
    put("tenant.domain_prefix", "  ContosoMX ")(data)

    order = parse_order(data)

    assert isinstance(order.tenant, CreateTenant)
    assert order.tenant.domain_prefix == "contosomx"
    assert order.domain == "contosomx.onmicrosoft.com"


def test_link_domain_is_normalised_to_lower_case() -> None:
    data = example(LINK)
    put("tenant.domain", "NorthWind.OnMicrosoft.com")(data)

    order = parse_order(data)

    assert isinstance(order.tenant, LinkTenant)
    assert order.domain == "northwind.onmicrosoft.com"


def test_accepted_edge_values() -> None:
    data = example(LINK)
    put("tenant.domain", "a" * 27 + ".onmicrosoft.com")(data)
    put("items.0.quantity", 10_000)(data)
    put("items.0.unit_price", 0.01)(data)  # a JSON number is fine, too
    put("items.1.term", "P3Y")(data)
    put("items.1.billing_cycle", "annual")(data)
    put("customer.address.country", "US")(data)  # when the marketplace is configured for it
    put("customer.address.state", "WA")(data)  # only MX addresses name one of the 32 states
    put("customer.address.postal_code", "WA 98052")(data)  # only MX demands 5 digits

    order = parse_order(data, countries=["MX", "US"])

    assert order.items[0].quantity == 10_000
    assert order.items[0].unit_price == Decimal("0.01")


def test_the_same_content_has_the_same_fingerprint() -> None:
    data = example(LINK)
    reordered = json.loads(json.dumps(data, sort_keys=True))
    spaced = example(LINK)
    put("tenant.domain", "  NORTHWIND.onmicrosoft.com ")(spaced)

    first = parse_order(data).fingerprint()

    assert parse_order(json.dumps(data, indent=4)).fingerprint() == first
    assert parse_order(reordered).fingerprint() == first
    assert parse_order(spaced).fingerprint() == first  # the same tenant, once normalised
    assert len(first) == 64


@pytest.mark.parametrize(
    "change",
    [
        put("items.0.quantity", 26),
        put("items.0.unit_price", "3120.01"),
        put("items.0.billing_cycle", "monthly"),
        put("items.0.term", "P3Y"),
        put("items.1.sku", "CFQ7TTC0LCHC:0003"),
        put("items.1.product_name", "Exchange Online (Plan 2)"),
        drop("items.1"),
        put("tenant.domain", "northwind2.onmicrosoft.com"),
        put("customer.contact.email", "otra@northwind.mx"),
    ],
    ids=[
        "quantity",
        "unit_price",
        "billing_cycle",
        "term",
        "sku",
        "product_name",
        "line-removed",
        "tenant",
        "contact",
    ],
)
def test_any_change_changes_the_fingerprint(change: Mutation) -> None:
    original = example(LINK)
    changed = example(LINK)
    change(changed)

    assert parse_order(changed).fingerprint() != parse_order(original).fingerprint()


def test_an_order_is_immutable() -> None:
    order = parse_order(example(CREATE))

    with pytest.raises(ValueError, match="frozen"):
        order.order_id = "OTHER-1"  # type: ignore[misc]
    assert isinstance(order, Order)


# --- the input rules of a Mexican marketplace (issue 7, item 6); the refusals are in
# tests/test_bad_input_corpus.py, run through the CLI.


def test_a_new_commerce_catalog_id_with_availability_is_accepted() -> None:
    data = example(CREATE)
    put("items.0.sku", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P")(data)

    order = parse_order(data)

    assert order.items[0].sku == "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P"
    assert order.items[0].product_sku == "CFQ7TTC0LH0Z:0001"


def test_two_availabilities_of_one_product_and_sku_are_one_product() -> None:
    data = example(LINK)
    put("items.0.sku", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P")(data)
    put("items.1.sku", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18Q")(data)

    assert problems_of(data) == [
        "items.1.sku: CFQ7TTC0LH0Z:0001 (the same product and SKU) is already on items.0: "
        "put all its seats on one line"
    ]


def test_another_sku_of_the_same_product_is_another_line() -> None:
    data = example(LINK)
    put("items.0.sku", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P")(data)
    put("items.1.sku", "CFQ7TTC0LH0Z:0002:CFQ7TTC0K18P")(data)

    assert len(parse_order(data).items) == 2


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("CDMX", "CMX"),
        ("Ciudad de México", "CMX"),
        ("ciudad de mexico", "CMX"),  # accents and case are optional
        ("Distrito Federal", "CMX"),
        ("CMX", "CMX"),
        ("JAL", "JAL"),
        ("Jal.", "JAL"),
        ("Jalisco", "JAL"),
        ("NL", "NLE"),
        ("N.L.", "NLE"),
        ("Nuevo León", "NLE"),
        ("NUEVO LEON", "NLE"),
        ("NLE", "NLE"),
        ("Estado de México", "MEX"),
        ("Edo. Méx.", "MEX"),
        ("México", "MEX"),
        ("Q. Roo", "ROO"),
        ("Quintana Roo", "ROO"),
        ("San Luis Potosí", "SLP"),
        ("Veracruz de Ignacio de la Llave", "VER"),
        ("  Yucatán ", "YUC"),
    ],
)
def test_a_mexican_state_in_any_usual_form_is_accepted(state: str, code: str) -> None:
    data = example(CREATE)
    put("customer.address.state", state)(data)

    address = parse_order(data).customer.address

    assert address.state_code == code
    assert address.state == state.strip()  # kept as sent: the fingerprint is of what was sent


def test_every_one_of_the_32_states_is_known_by_code_and_name() -> None:
    from csp_core.orders.mexico import MX_STATES, mx_state_code

    assert len(MX_STATES) == 32
    for code, (name, _aliases) in MX_STATES.items():
        assert mx_state_code(code) == code
        assert mx_state_code(name) == code


def test_the_examples_name_their_states() -> None:
    codes = {
        name: parse_order((EXAMPLES / name).read_bytes()).customer.address.state_code
        for name in sorted(p.name for p in EXAMPLES.glob("*.json"))
    }

    assert codes == {
        "order-create.json": "CMX",
        "order-link-invite.json": "GUA",
        "order-link-ours.json": "NLE",
    }


@pytest.mark.parametrize("price", ["129", 129, "129.0", "129.000", 129.0, "1.29E+2"])
def test_amounts_are_compared_by_value(price: Any) -> None:
    canonical = parse_order(example(CREATE))
    data = example(CREATE)
    put("items.0.unit_price", price)(data)

    order = parse_order(data)

    assert str(order.items[0].unit_price) == "129.00"
    assert order.fingerprint() == canonical.fingerprint()
    assert order == canonical


def test_the_fingerprint_of_a_canonical_order_is_unchanged() -> None:
    """Fingerprints already recorded (registry, workflow memo) must still match."""
    fingerprints = {
        name: parse_order((EXAMPLES / name).read_bytes()).fingerprint()[:16]
        for name in (CREATE, LINK)
    }

    assert fingerprints == {CREATE: "a9fa905a5572e631", LINK: "c4b7e9741b40c082"}


def test_the_largest_line_total_the_registry_stores_is_accepted() -> None:
    data = example(CREATE)
    put("items.0.quantity", 10_000)(data)
    put("items.0.unit_price", "999999.99")(data)  # 9,999,999,900.00

    assert parse_order(data).items[0].unit_price == Decimal("999999.99")


def test_text_in_normal_form_with_accents_and_symbols_is_accepted() -> None:
    data = example(CREATE)
    put("customer.company_name", "Ñandú & Compañía, S.A. de C.V. (Güemes)")(data)
    put("customer.address.line1", 'Calle 5 de Mayo #12 "B", 3er piso')(data)

    assert parse_order(data).customer.company_name.startswith("Ñandú & Compañía")


def test_configured_countries_are_accepted() -> None:
    data = example(CREATE)
    put("customer.address.country", "US")(data)
    put("customer.address.state", "NY")(data)
    put("customer.address.postal_code", "10001")(data)

    with pytest.raises(OrderValidationError, match="customer.address.country: must be MX"):
        parse_order(data)
    assert parse_order(data, countries=["MX", "US"]).customer.address.country == "US"
    with pytest.raises(OrderValidationError, match="must be MX or US"):
        parse_order(put_country(data, "CA"), countries=["MX", "US"])


def put_country(data: dict[str, Any], country: str) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    put("customer.address.country", country)(changed)
    return changed


def test_an_accepted_order_always_decodes_from_workflow_history() -> None:
    """Workers read orders back without the submission context: an order accepted under another
    configuration (or before a rule existed) still decodes, so an order in flight never sticks."""
    from csp_core.orders.acceptance import AcceptancePolicy
    from csp_core.orders.provisioning import OrderRequest
    from temporalutil.converter import DATA_CONVERTER

    data = example(CREATE)
    put("customer.address.country", "US")(data)
    put("customer.address.state", "NY")(data)
    put("customer.address.postal_code", "10001")(data)
    order = parse_order(data, countries=["MX", "US"])
    request = OrderRequest(order=order, acceptance=AcceptancePolicy())
    older = example(CREATE)
    put("customer.address.state", "asdf")(older)  # accepted before the 32 states were a rule
    older_request = OrderRequest(order=Order.model_validate(older), acceptance=AcceptancePolicy())

    converter = DATA_CONVERTER.payload_converter
    for sent in (request, older_request):
        [decoded] = converter.from_payloads(converter.to_payloads([sent]), [OrderRequest])
        assert decoded == sent
    with pytest.raises(OrderValidationError, match="customer.address.state"):
        parse_order(older)
