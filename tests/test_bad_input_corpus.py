"""A corpus of bad orders, each run through the CLI's validation (`csp order submit FILE`).

Every payload must exit 2 with a line naming the field path and the rule, and start nothing:
Temporal is at a closed port (any attempt to connect would exit 5 instead) and the registry's
database file is never created. The cases include everything issue 7 found slipping through.

In-process (typer's CliRunner), so the corpus stays quick; tests/test_cli.py runs the CLI as
a subprocess for the same guarantees.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from csp_core.settings import get_settings
from starter import app
from tests.support.mutations import Mutation, both, drop, put

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CREATE, LINK = "order-create.json", "order-link-ours.json"  # LINK: two lines
EXIT_INVALID = 2


def second_line(sku: str, first_sku: str | None = None) -> Mutation:
    """A second line with `sku` (and the first line's sku set to `first_sku`)."""

    def mutate(data: dict[str, Any]) -> None:
        if first_sku:
            data["items"][0]["sku"] = first_sku
        line = copy.deepcopy(data["items"][0])
        line.update(sku=sku, quantity=3)
        data["items"].append(line)

    return mutate


US_ADDRESS = both(
    put("customer.address.country", "US"),
    put("customer.address.state", "NY"),
    put("customer.address.postal_code", "10001"),
    put("customer.address.city", "New York"),
)
NUL = "must not contain control or invisible characters (line breaks, tabs, NUL...): found U+0000"
CR = "found U+000D CARRIAGE RETURN"
LF = "found U+000A LINE FEED"
MARKUP = "must not contain markup characters '<' or '>'"
NFKC = "must be in Unicode normal form NFKC"
NOT_MX = "must be MX: the marketplace takes orders for addresses in MX only"
STATES = "must be one of Mexico's 32 states, by name (e.g. Jalisco, Nuevo León"
CP = "a Mexican código postal has exactly 5 digits"
SKU = "must look like CFQ7TTC0LH18:0001 (12-character product id, ':' and 4-digit SKU id) or "
TOTAL = "a line's total must be at most 9,999,999,999.99 MXN"
PRICE = "must be an amount in MXN greater than 0 and at most 9,999,999,999.99"

# (case id, example, mutation, field path, distinctive fragment of the rule)
CORPUS: list[tuple[str, str, Mutation, str, str]] = [
    # Control characters, anywhere (issue: NUL and CR/LF went on to the provider).
    (
        "nul-company",
        CREATE,
        put("customer.company_name", "Contoso\0 SA"),
        "customer.company_name",
        NUL,
    ),
    (
        "nul-first-name",
        CREATE,
        put("customer.contact.first_name", "A\0na"),
        "customer.contact.first_name",
        NUL,
    ),
    ("nul-reseller-name", CREATE, put("reseller.name", "Integradora\0"), "reseller.name", NUL),
    (
        "nul-product-name",
        CREATE,
        put("items.0.product_name", "M365\0"),
        "items.0.product_name",
        NUL,
    ),
    (
        "nul-email",
        CREATE,
        put("customer.contact.email", "ana\0@contoso.mx"),
        "customer.contact.email",
        NUL,
    ),
    ("nul-order-id", CREATE, put("order_id", "ABS-\0-1"), "order_id", NUL),
    ("nul-reseller-id", CREATE, put("reseller.id", "RSL\0"), "reseller.id", NUL),
    (
        "nul-postal-code",
        CREATE,
        put("customer.address.postal_code", "0310\0"),
        "customer.address.postal_code",
        NUL,
    ),
    (
        "crlf-company",
        CREATE,
        put("customer.company_name", "Contoso\r\nBcc: x@y.mx"),
        "customer.company_name",
        CR,
    ),
    (
        "lf-last-name",
        CREATE,
        put("customer.contact.last_name", "López\nPérez"),
        "customer.contact.last_name",
        LF,
    ),
    (
        "trailing-lf-company",
        CREATE,
        put("customer.company_name", "Contoso SA\n"),
        "customer.company_name",
        LF,
    ),
    ("lf-reseller-name", CREATE, put("reseller.name", "Integradora\nNorte"), "reseller.name", LF),
    (
        "cr-line1",
        CREATE,
        put("customer.address.line1", "Av. Insurgentes\r1234"),
        "customer.address.line1",
        CR,
    ),
    (
        "lf-line2",
        CREATE,
        put("customer.address.line2", "Piso 3\nInt. 4"),
        "customer.address.line2",
        LF,
    ),
    (
        "tab-city",
        CREATE,
        put("customer.address.city", "Ciudad\tde México"),
        "customer.address.city",
        "found U+0009 TAB",
    ),
    ("lf-state", CREATE, put("customer.address.state", "Jalisco\n"), "customer.address.state", LF),
    (
        "tab-domain-prefix",
        CREATE,
        put("tenant.domain_prefix", "contoso\tmx"),
        "tenant.domain_prefix",
        "found U+0009 TAB",
    ),
    (
        "lf-link-domain",
        LINK,
        put("tenant.domain", "northwind.onmicrosoft.com\n"),
        "tenant.domain",
        LF,
    ),
    (
        "del-last-name",
        CREATE,
        put("customer.contact.last_name", "López\x7f"),
        "customer.contact.last_name",
        "found U+007F",
    ),
    (
        "c1-next-line-city",
        CREATE,
        put("customer.address.city", "León\x85"),
        "customer.address.city",
        "found U+0085",
    ),
    (
        "line-separator-line1",
        CREATE,
        put("customer.address.line1", "Av. Juárez\u20281"),
        "customer.address.line1",
        "found U+2028 LINE SEPARATOR",
    ),
    (
        "zero-width-order-id",
        CREATE,
        put("order_id", "ABS\u200b2026"),
        "order_id",
        "found U+200B ZERO WIDTH SPACE",
    ),
    (
        "bidi-override-company",
        CREATE,
        put("customer.company_name", "Contoso \u202eAS"),
        "customer.company_name",
        "found U+202E RIGHT-TO-LEFT OVERRIDE",
    ),
    (
        "bom-reseller-name",
        CREATE,
        put("reseller.name", "\ufeffIntegradora Norte"),
        "reseller.name",
        "found U+FEFF",
    ),
    # Markup in names (issue: <script> went to the provider and into an e-mail subject).
    (
        "script-company",
        CREATE,
        put("customer.company_name", "<script>alert(1)</script> SA"),
        "customer.company_name",
        MARKUP,
    ),
    (
        "markup-first-name",
        CREATE,
        put("customer.contact.first_name", "<b>Ana</b>"),
        "customer.contact.first_name",
        MARKUP,
    ),
    (
        "markup-last-name",
        CREATE,
        put("customer.contact.last_name", "López>"),
        "customer.contact.last_name",
        "(found '>')",
    ),
    (
        "markup-reseller-name",
        CREATE,
        put("reseller.name", "Integradora <Norte>"),
        "reseller.name",
        MARKUP,
    ),
    (
        "markup-product-name",
        CREATE,
        put("items.0.product_name", "M365 <img src=x onerror=alert(1)>"),
        "items.0.product_name",
        MARKUP,
    ),
    (
        "markup-line1",
        CREATE,
        put("customer.address.line1", "<a href=x>Av.</a> 1"),
        "customer.address.line1",
        MARKUP,
    ),
    (
        "markup-line2",
        CREATE,
        put("customer.address.line2", "Int. <4>"),
        "customer.address.line2",
        MARKUP,
    ),
    (
        "markup-city",
        CREATE,
        put("customer.address.city", "<iframe>León"),
        "customer.address.city",
        "(found '<' '>')",
    ),
    # Text NFKC would change: refused with the reason, never folded.
    (
        "kelvin-prefix",
        CREATE,
        put("tenant.domain_prefix", "\u212aontosomx"),
        "tenant.domain_prefix",
        "U+212A KELVIN SIGN at character 1 would become 'K'",
    ),
    (
        "kelvin-link-domain",
        LINK,
        put("tenant.domain", "\u212aorthwind.onmicrosoft.com"),
        "tenant.domain",
        "U+212A KELVIN SIGN",
    ),
    (
        "kelvin-email",
        CREATE,
        put("customer.contact.email", "ana\u212a@contoso.mx"),
        "customer.contact.email",
        "U+212A KELVIN SIGN",
    ),
    ("kelvin-order-id", CREATE, put("order_id", "ABS-\u212a-1"), "order_id", NFKC),
    (
        "decomposed-city",
        CREATE,
        put("customer.address.city", "Ciudad de Me\u0301xico"),
        "customer.address.city",
        "decomposed character; send it composed, as 'é'",
    ),
    (
        "decomposed-company",
        CREATE,
        put("customer.company_name", "Contoso Me\u0301xico SA"),
        "customer.company_name",
        "U+0301 COMBINING ACUTE ACCENT",
    ),
    (
        "decomposed-state",
        CREATE,
        put("customer.address.state", "Nuevo Leo\u0301n"),
        "customer.address.state",
        "decomposed character",
    ),
    (
        "fullwidth-company",
        CREATE,
        put("customer.company_name", "Ｃｏｎｔｏｓｏ SA"),
        "customer.company_name",
        "U+FF23 FULLWIDTH LATIN CAPITAL LETTER C",
    ),
    (
        "no-break-space-last-name",
        CREATE,
        put("customer.contact.last_name", "López\u00a0Pérez"),
        "customer.contact.last_name",
        "U+00A0 NO-BREAK SPACE",
    ),
    (
        "ligature-product",
        CREATE,
        put("items.0.product_name", "Microsoft 365 O\ufb03ce"),
        "items.0.product_name",
        "U+FB03 LATIN SMALL LIGATURE FFI",
    ),
    (
        "fullwidth-postal-code",
        CREATE,
        put("customer.address.postal_code", "０３１００"),
        "customer.address.postal_code",
        NFKC,
    ),
    # Country: MX unless configured otherwise.
    (
        "country-xx",
        CREATE,
        put("customer.address.country", "XX"),
        "customer.address.country",
        NOT_MX,
    ),
    ("country-us-10001", CREATE, US_ADDRESS, "customer.address.country", f"{NOT_MX} (got US)"),
    (
        "country-lower-case",
        CREATE,
        put("customer.address.country", "mx"),
        "customer.address.country",
        "2-letter ISO 3166 country code in upper case",
    ),
    (
        "country-alpha-3",
        CREATE,
        put("customer.address.country", "MEX"),
        "customer.address.country",
        "2-letter ISO 3166 country code",
    ),
    (
        "country-missing",
        CREATE,
        drop("customer.address.country"),
        "customer.address.country",
        "required, but missing",
    ),
    # The 32 states.
    (
        "state-asdf",
        CREATE,
        put("customer.address.state", "asdf"),
        "customer.address.state",
        f"{STATES}",
    ),
    (
        "state-us",
        CREATE,
        put("customer.address.state", "Texas"),
        "customer.address.state",
        "ISO 3166-2:MX code (AGU, BCN, BCS,",
    ),
    (
        "state-not-mexican-code",
        CREATE,
        put("customer.address.state", "CA"),
        "customer.address.state",
        "(got 'CA')",
    ),
    (
        "state-blank",
        CREATE,
        put("customer.address.state", "  "),
        "customer.address.state",
        "must be text of 1-200 characters",
    ),
    (
        "state-markup",
        CREATE,
        put("customer.address.state", "<Jalisco>"),
        "customer.address.state",
        MARKUP,
    ),
    # Postal codes: 5 digits in MX.
    (
        "postal-code-x",
        CREATE,
        put("customer.address.postal_code", "x"),
        "customer.address.postal_code",
        CP,
    ),
    (
        "postal-code-4-digits",
        CREATE,
        put("customer.address.postal_code", "3100"),
        "customer.address.postal_code",
        CP,
    ),
    (
        "postal-code-6-digits",
        CREATE,
        put("customer.address.postal_code", "031000"),
        "customer.address.postal_code",
        CP,
    ),
    (
        "postal-code-space",
        CREATE,
        put("customer.address.postal_code", "03 100"),
        "customer.address.postal_code",
        CP,
    ),
    (
        "postal-code-arabic-digits",
        CREATE,
        put("customer.address.postal_code", "٠٣١٠٠"),
        "customer.address.postal_code",
        CP,
    ),
    (
        "postal-code-number",
        CREATE,
        put("customer.address.postal_code", 3100),
        "customer.address.postal_code",
        "must be text of 1-10 characters",
    ),
    # Amounts within NUMERIC(12, 2), the line total included (issue: the cycle retried forever).
    (
        "line-total-overflow",
        CREATE,
        both(put("items.0.quantity", 10_000), put("items.0.unit_price", "1000000.00")),
        "items.0.unit_price",
        f"quantity × unit_price is 10,000,000,000.00 MXN: {TOTAL}",
    ),
    (
        "line-total-overflow-second-line",
        LINK,
        both(put("items.1.quantity", 5_000), put("items.1.unit_price", "2000000.01")),
        "items.1.unit_price",
        TOTAL,
    ),
    (
        "unit-price-too-large",
        CREATE,
        put("items.0.unit_price", "10000000000.00"),
        "items.0.unit_price",
        PRICE,
    ),
    (
        "unit-price-3-decimals",
        CREATE,
        put("items.0.unit_price", "129.001"),
        "items.0.unit_price",
        "with at most 2 decimal places",
    ),
    ("unit-price-zero", CREATE, put("items.0.unit_price", "0.00"), "items.0.unit_price", PRICE),
    (
        "unit-price-negative",
        CREATE,
        put("items.0.unit_price", "-129.00"),
        "items.0.unit_price",
        PRICE,
    ),
    ("unit-price-nan", CREATE, put("items.0.unit_price", "NaN"), "items.0.unit_price", PRICE),
    (
        "unit-price-infinity",
        CREATE,
        put("items.0.unit_price", "Infinity"),
        "items.0.unit_price",
        PRICE,
    ),
    (
        "unit-price-words",
        CREATE,
        put("items.0.unit_price", "ciento veintinueve"),
        "items.0.unit_price",
        PRICE,
    ),
    # Catalog ids: PRODUCT:SKU or PRODUCT:SKU:AVAILABILITY, and one line per product:sku.
    ("sku-no-sku-id", CREATE, put("items.0.sku", "CFQ7TTC0LH18"), "items.0.sku", SKU),
    (
        "sku-availability-lower-case",
        CREATE,
        put("items.0.sku", "CFQ7TTC0LH0Z:0001:cfq7ttc0k18p"),
        "items.0.sku",
        SKU,
    ),
    (
        "sku-availability-short",
        CREATE,
        put("items.0.sku", "CFQ7TTC0LH0Z:0001:CFQ7"),
        "items.0.sku",
        SKU,
    ),
    ("sku-trailing-colon", CREATE, put("items.0.sku", "CFQ7TTC0LH18:0001:"), "items.0.sku", SKU),
    (
        "sku-four-parts",
        CREATE,
        put("items.0.sku", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P:0001"),
        "items.0.sku",
        SKU,
    ),
    ("sku-dash", CREATE, put("items.0.sku", "CFQ7TTC0LH18-0001"), "items.0.sku", SKU),
    (
        "duplicate-product-two-availabilities",
        CREATE,
        second_line("CFQ7TTC0LH0Z:0001:CFQ7TTC0K18Q", "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P"),
        "items.1.sku",
        "CFQ7TTC0LH0Z:0001 (the same product and SKU) is already on items.0",
    ),
    (
        "duplicate-product-with-and-without-availability",
        CREATE,
        second_line("CFQ7TTC0LH18:0001:CFQ7TTC0K18P"),
        "items.1.sku",
        "is already on items.0: put all its seats on one line",
    ),
    (
        "duplicate-sku",
        CREATE,
        second_line("CFQ7TTC0LH18:0001"),
        "items.1.sku",
        "CFQ7TTC0LH18:0001 is already on items.0",
    ),
    # The rest of the order's rules, through the same door.
    (
        "quantity-text",
        CREATE,
        put("items.0.quantity", "10"),
        "items.0.quantity",
        "(a JSON number, not text)",
    ),
    (
        "quantity-zero",
        CREATE,
        put("items.0.quantity", 0),
        "items.0.quantity",
        "between 1 and 10000",
    ),
    (
        "term-unknown",
        CREATE,
        put("items.0.term", "P2Y"),
        "items.0.term",
        "must be 'P1M', 'P1Y' or 'P3Y'",
    ),
    (
        "p1m-annual",
        CREATE,
        both(put("items.0.term", "P1M"), put("items.0.billing_cycle", "annual")),
        "items.0.billing_cycle",
        "a P1M term can only be billed monthly",
    ),
    (
        "prefix-hyphen",
        CREATE,
        put("tenant.domain_prefix", "contoso-mx"),
        "tenant.domain_prefix",
        "letters and digits only",
    ),
    (
        "prefix-accent",
        CREATE,
        put("tenant.domain_prefix", "méxico"),
        "tenant.domain_prefix",
        "no hyphens, dots, spaces or accents",
    ),
    (
        "email-no-at",
        CREATE,
        put("customer.contact.email", "ana.lopez.contoso.mx"),
        "customer.contact.email",
        "must be an e-mail address like nombre@empresa.mx",
    ),
    (
        "order-id-space",
        CREATE,
        put("order_id", "ABS 2026"),
        "order_id",
        "must be 3-64 letters, digits",
    ),
    ("extra-field", CREATE, put("coupon", "PROMO10"), "coupon", "not a field of the order"),
    ("missing-items", CREATE, drop("items"), "items", "required, but missing"),
]


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on return: nothing listens there


@pytest.fixture
def cli(tmp_path: Path, closed_port: int) -> Iterator[CliRunner]:
    """The CLI in-process, with Temporal at a closed port and the registry in tmp_path."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("TEMPORAL_NAMESPACE", "ORDER_COUNTRIES", "PAYLOAD_ENCRYPTION_KEYS"):
            env.delenv(name, raising=False)
        env.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{closed_port}")
        env.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
        env.setenv("SECRETS_KEY_FILE", str(tmp_path / "secrets.key"))
        get_settings.cache_clear()
        yield CliRunner()
    get_settings.cache_clear()


def bad_file(tmp_path: Path, example: str, mutate: Mutation, name: str = "order.json") -> Path:
    data = json.loads((EXAMPLES / example).read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_the_corpus_is_large_and_each_case_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len({case for case, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(
    ("example", "mutate", "field", "rule"),
    [pytest.param(example, m, field, rule, id=case) for case, example, m, field, rule in CORPUS],
)
def test_a_bad_order_exits_2_naming_field_and_rule_and_starts_nothing(
    cli: CliRunner, tmp_path: Path, example: str, mutate: Mutation, field: str, rule: str
) -> None:
    path = bad_file(tmp_path, example, mutate)

    result = cli.invoke(app, ["order", "submit", str(path)])

    assert result.exit_code == EXIT_INVALID, result.output  # 5 if it had tried to connect
    assert result.stdout == ""
    problems = [line.removeprefix("  - ") for line in result.stderr.splitlines()[1:]]
    assert result.stderr.startswith("invalid order:\n")
    assert len(problems) == 1, result.stderr  # the one rule this case breaks, nothing else
    assert problems[0].startswith(f"{field}: "), problems[0]
    assert rule in problems[0]
    assert not (tmp_path / "registry.db").exists()  # not even the registry was opened


def test_the_whole_corpus_at_once_starts_nothing(cli: CliRunner, tmp_path: Path) -> None:
    """One invocation with every bad file and a good one: each bad file is named, and the good
    one is not started either (all files are validated before Temporal is reached)."""
    good = bad_file(tmp_path, CREATE, lambda data: None, name="good.json")
    files = [
        bad_file(tmp_path, example, mutate, name=f"{case}.json")
        for case, example, mutate, _field, _rule in CORPUS
    ]

    result = cli.invoke(app, ["order", "submit", str(good), *map(str, files)])

    assert result.exit_code == EXIT_INVALID, result.output
    assert result.stdout == ""
    for path, (_case, _example, _mutate, field, _rule) in zip(files, CORPUS, strict=True):
        assert f"{path}: invalid order:\n  - {field}: " in result.stderr
    assert str(good) not in result.stderr
    assert not (tmp_path / "registry.db").exists()


def test_a_configured_country_is_accepted_and_then_reaches_for_temporal(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the US order of the corpus passes validation when the marketplace sells
    in the US too, and then tries Temporal (exit 5 at the closed port)."""
    monkeypatch.setenv("ORDER_COUNTRIES", "MX,US")
    get_settings.cache_clear()
    path = bad_file(tmp_path, CREATE, US_ADDRESS)

    result = cli.invoke(app, ["order", "submit", str(path)])

    assert result.exit_code == 5, result.output
    assert "cannot connect to Temporal" in result.stderr
