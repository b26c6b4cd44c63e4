"""The order as order systems submit it (DESIGN.md "Order input"), validated at the boundary.

Every rule here fails with a message that names the field and the rule, before anything starts.

`parse_order` is the boundary: it validates with a `Submission` in pydantic's validation
context, which switches on the submission rules (the marketplace's countries and states, clean
text, amount bounds). An `Order` validated without that context is one being read back (from
workflow history, an activity's input): it was judged when it was submitted, and is not judged
again by rules added or reconfigured since, so an order in flight always decodes.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from csp_core.orders.mexico import ACCEPTED_STATE_FORMS, mx_state_code

ONMICROSOFT_SUFFIX = ".onmicrosoft.com"
DOMAIN_PREFIX_MAX = 27
_PREFIX_RE = re.compile(r"^[a-z0-9]+$")
# Partner Center NCE catalog item: 12-character product id, ':' and a 4-digit SKU id, optionally
# followed by ':' and the 12-character availability id (PRODUCT:SKU:AVAILABILITY).
SKU_PATTERN = r"^[A-Z0-9]{12}:[0-9]{4}(:[A-Z0-9]{12})?$"
ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
MAX_SEATS_PER_LINE = 10_000
MAX_LINES = 50
# Amounts are stored as NUMERIC(12, 2) (the registry's Money column): at most 10 digits before
# the decimal point and 2 after. A line's total (quantity × unit price) becomes a renewal charge.
MONEY_MAX_DIGITS = 12
MONEY_DECIMAL_PLACES = 2
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal(10 ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES)) - CENT
DEFAULT_ORDER_COUNTRIES = ("MX",)


@dataclass(frozen=True)
class Submission:
    """The rules an order is judged by when it is submitted (parse_order's validation context)."""

    countries: tuple[str, ...] = DEFAULT_ORDER_COUNTRIES


SUBMISSION = "submission"  # the validation context key parse_order sets


def _submission(info: ValidationInfo) -> Submission | None:
    context = info.context
    if isinstance(context, dict):
        submission = context.get(SUBMISSION)
        return submission if isinstance(submission, Submission) else Submission()
    return None


# The error type of every rule below; parse_order reads its context.
RULE_ERROR = "order_rule"


def _rule(message: str) -> WrapValidator:
    """Replace pydantic's generic wording (a regex, "Input should be...") with the field's rule
    in plain English. The inner constraints stay, so the JSON schema is unchanged."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(RULE_ERROR, message) from None

    return WrapValidator(validate)


def _email_rule(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as err:
        reason = str(err.errors()[0].get("ctx", {}).get("reason", "")).strip()
        raise PydanticCustomError(
            RULE_ERROR,
            "must be an e-mail address like nombre@empresa.mx" + (" ({reason})" if reason else ""),
            {"reason": reason},
        ) from None


def _field_error(field: str, rule: str) -> PydanticCustomError:
    """A rule a model validator checks across fields, reported on the field it is about:
    parse_order appends `field` (a dotted path below the model) to the error's location."""
    return PydanticCustomError(RULE_ERROR, "{field}: {rule}", {"field": field, "rule": rule})


# Characters no order text may hold: controls (NUL, tab, CR, LF, DEL, C1), invisible format
# characters (zero-width, bidirectional overrides, BOM), private use, surrogates and the Unicode
# line and paragraph separators. They end up in provider requests, database rows and e-mails.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
_CONTROL_NAMES = {"\0": "NUL", "\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN"}
_MARKUP = "<>"


def _char(ch: str) -> str:
    name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def _text_problem(value: str) -> str | None:
    """Why this text cannot be taken as it is (control characters, or not NFKC-normal)."""
    for position, ch in enumerate(value, start=1):
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            return (
                f"must not contain control or invisible characters (line breaks, tabs, NUL...): "
                f"found {_char(ch)} at character {position}"
            )
    if unicodedata.is_normalized("NFKC", value):
        return None
    # Refused rather than folded: a silently folded name (KELVIN SIGN -> K) is not what the
    # sender wrote, and would make two spellings of one order look different, or the same.
    for position, ch in enumerate(value, start=1):
        folded = unicodedata.normalize("NFKC", ch)
        if folded != ch:
            return (
                f"must be in Unicode normal form NFKC: {_char(ch)} at character {position} "
                f"would become {folded!r}; send {folded!r} instead"
            )
        if position > 1 and unicodedata.combining(ch):
            pair = value[position - 2 : position]
            composed = unicodedata.normalize("NFKC", pair)
            if composed != pair:
                return (
                    f"must be in Unicode normal form NFKC: {pair[0]!r} followed by {_char(ch)} "
                    f"at character {position} is a decomposed character; send it composed, "
                    f"as {composed!r} (NFC/NFKC)"
                )
    return "must be in Unicode normal form NFKC: send it composed (NFC/NFKC)"


def _clean_text(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Submission rule of every text field, checked on the text as sent (before trimming)."""
    if isinstance(value, str) and _submission(info) is not None:
        problem = _text_problem(value)
        if problem:
            raise PydanticCustomError(RULE_ERROR, problem)
    return handler(value)


def _clean_name(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Submission rule of names and address text: clean text, and no markup."""
    value = _clean_text(value, handler, info)
    if isinstance(value, str) and _submission(info) is not None:
        found = sorted({ch for ch in value if ch in _MARKUP})
        if found:
            raise PydanticCustomError(
                RULE_ERROR,
                "must not contain markup characters '<' or '>' (found {found})",
                {"found": " ".join(f"'{ch}'" for ch in found)},
            )
    return value


CleanText = WrapValidator(_clean_text)
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    _rule("must be text of 1-200 characters"),
    WrapValidator(_clean_name),
]
Email = Annotated[EmailStr, WrapValidator(_email_rule), CleanText]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Term(StrEnum):
    P1M = "P1M"
    P1Y = "P1Y"
    P3Y = "P3Y"


class BillingCycle(StrEnum):
    MONTHLY = "monthly"
    ANNUAL = "annual"


class TenantMode(StrEnum):
    CREATE = "create"
    LINK = "link"


def normalize_prefix(value: str) -> str:
    """Lower-case an onmicrosoft.com prefix; ValueError says which rule it breaks."""
    prefix = value.strip().lower()
    if not prefix:
        raise ValueError("must not be empty")
    if len(prefix) > DOMAIN_PREFIX_MAX:
        raise ValueError(f"must have at most {DOMAIN_PREFIX_MAX} characters (got {len(prefix)})")
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            "must use letters and digits only (a-z, 0-9: no hyphens, dots, spaces or accents)"
        )
    return prefix


def tenant_domain(value: str) -> str:
    """A tenant's initial onmicrosoft.com domain, lower-cased; ValueError says which rule it
    breaks (link orders, and the subscription commands that name a tenant)."""
    domain = value.strip().lower()
    if not domain.endswith(ONMICROSOFT_SUFFIX):
        raise ValueError(
            "must be the tenant's initial <prefix>.onmicrosoft.com domain, "
            "e.g. fabrikam.onmicrosoft.com"
        )
    try:
        normalize_prefix(domain.removesuffix(ONMICROSOFT_SUFFIX))
    except ValueError as err:
        raise ValueError(f"the part before {ONMICROSOFT_SUFFIX} {err}") from None
    return domain


RESELLER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
RESELLER_ID_RULE = "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"


class Reseller(_Model):
    id: Annotated[
        str,
        StringConstraints(pattern=RESELLER_ID_PATTERN),
        _rule(RESELLER_ID_RULE),
        CleanText,
    ]
    name: Text
    email: Email


class Contact(_Model):
    first_name: Text
    last_name: Text
    email: Email


class Address(_Model):
    line1: Text
    line2: Text | None = None
    city: Text
    state: Text = Field(
        description="For MX: one of the 32 states, by name, usual abbreviation or "
        "ISO 3166-2:MX code (e.g. Jalisco, CDMX, NLE)"
    )
    postal_code: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=10),
        _rule("must be text of 1-10 characters"),
        CleanText,
    ]
    country: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Z]{2}$"),
        _rule("must be a 2-letter ISO 3166 country code in upper case, e.g. MX"),
        CleanText,
    ] = Field(description="ISO 3166-1 alpha-2 country code, upper case")

    @model_validator(mode="after")
    def _country_rules(self, info: ValidationInfo) -> Address:
        submission = _submission(info)
        if submission is not None and self.country not in submission.countries:
            raise _field_error(
                "country",
                f"must be {' or '.join(submission.countries)}: the marketplace takes orders for "
                f"addresses in {', '.join(submission.countries)} only (got {self.country})",
            )
        if self.country == "MX" and not re.fullmatch(r"[0-9]{5}", self.postal_code):
            raise _field_error("postal_code", "a Mexican código postal has exactly 5 digits")
        if self.country == "MX" and submission is not None and self.state_code is None:
            raise _field_error("state", f"must be {ACCEPTED_STATE_FORMS} (got {self.state!r})")
        return self

    @property
    def state_code(self) -> str | None:
        """The ISO 3166-2:MX code of a Mexican address's state (the state is kept as sent)."""
        return mx_state_code(self.state) if self.country == "MX" else None


class Customer(_Model):
    company_name: Text
    contact: Contact
    address: Address


class CreateTenant(_Model):
    """Create a new customer tenant <domain_prefix>.onmicrosoft.com."""

    mode: Literal[TenantMode.CREATE]
    domain_prefix: Annotated[str, CleanText]

    @field_validator("domain_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.strip().lower().endswith(ONMICROSOFT_SUFFIX):
            raise ValueError(f"give only the prefix, without {ONMICROSOFT_SUFFIX}")
        return normalize_prefix(value)

    @property
    def domain(self) -> str:
        return f"{self.domain_prefix}{ONMICROSOFT_SUFFIX}"


class LinkTenant(_Model):
    """Link the client's existing tenant, named by its initial onmicrosoft.com domain."""

    mode: Literal[TenantMode.LINK]
    domain: Annotated[str, CleanText]

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return tenant_domain(value)


TenantChoice = Annotated[CreateTenant | LinkTenant, Field(discriminator="mode")]


def _one_of(enum: type[StrEnum]) -> str:
    values = [f"'{member.value}'" for member in enum]
    return "must be " + ", ".join(values[:-1]) + " or " + values[-1]


class OrderItem(_Model):
    sku: Annotated[
        str,
        StringConstraints(strip_whitespace=True, pattern=SKU_PATTERN),
        _rule(
            "must look like CFQ7TTC0LH18:0001 (12-character product id, ':' and 4-digit SKU id) "
            "or CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P (the same, then ':' and the 12-character "
            "availability id), in upper case"
        ),
        CleanText,
    ] = Field(
        description="Partner Center catalog item: PRODUCT:SKU (CFQ7TTC0LH18:0001) or "
        "PRODUCT:SKU:AVAILABILITY (CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P)"
    )
    product_name: Text
    quantity: Annotated[
        int,
        Field(ge=1, le=MAX_SEATS_PER_LINE, strict=True),
        _rule(
            f"must be a whole number between 1 and {MAX_SEATS_PER_LINE} (a JSON number, not text)"
        ),
    ]
    term: Annotated[Term, _rule(_one_of(Term))]
    billing_cycle: Annotated[BillingCycle, _rule(_one_of(BillingCycle))]
    unit_price: Annotated[
        Decimal,
        Field(gt=0, max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES),
        _rule(
            "must be an amount in MXN greater than 0 and at most "
            f'{MAX_AMOUNT:,}, with at most 2 decimal places, e.g. "129.00"'
        ),
    ]

    @field_validator("unit_price")
    @classmethod
    def _cents(cls, price: Decimal) -> Decimal:
        # Compared by value: "129", 129 and "129.00" are one price, and one order fingerprint.
        return price.quantize(CENT)

    @model_validator(mode="after")
    def _line_total_fits(self, info: ValidationInfo) -> OrderItem:
        total = self.quantity * self.unit_price
        if _submission(info) is not None and total > MAX_AMOUNT:
            raise _field_error(
                "unit_price",
                f"quantity × unit_price is {total:,} MXN: a line's total must be at most "
                f"{MAX_AMOUNT:,} MXN (the largest amount the registry stores)",
            )
        return self

    @property
    def product_sku(self) -> str:
        """PRODUCT:SKU, without the availability: what makes two lines the same product."""
        return ":".join(self.sku.split(":")[:2])

    @field_validator("billing_cycle")
    @classmethod
    def _term_and_cycle(cls, cycle: BillingCycle, info: ValidationInfo) -> BillingCycle:
        # New Commerce: a monthly term can only bill monthly; annual and triennial terms
        # can bill monthly or annually. (A field validator, so the error names billing_cycle;
        # `term` is declared first, so it is in info.data when it was valid.)
        if info.data.get("term") is Term.P1M and cycle is not BillingCycle.MONTHLY:
            raise ValueError("a P1M term can only be billed monthly")
        return cycle


class Order(_Model):
    order_id: Annotated[
        str,
        StringConstraints(pattern=ORDER_ID_PATTERN),
        _rule("must be 3-64 letters, digits, '-' or '_', starting with a letter or digit"),
        CleanText,
    ]
    reseller: Reseller
    customer: Customer
    tenant: TenantChoice
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def _unique_skus(self) -> Order:
        seen: dict[str, int] = {}
        for index, item in enumerate(self.items):
            product = item.product_sku
            if product in seen:
                same = "" if item.sku == product else " (the same product and SKU)"
                raise _field_error(
                    f"items.{index}.sku",
                    f"{product}{same} is already on items.{seen[product]}: "
                    "put all its seats on one line",
                )
            seen[product] = index
        return self

    @property
    def domain(self) -> str:
        return self.tenant.domain

    @property
    def workflow_id(self) -> str:
        return order_workflow_id(self.order_id)

    def fingerprint(self) -> str:
        """A stable digest of the order's content: the same order id must carry the same order."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def order_workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


class OrderValidationError(ValueError):
    """Raised with one line per problem, each naming the field path and the rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid order:\n" + "\n".join(f"  - {p}" for p in problems))


# Plain-English wording for pydantic's own error types (structure and JSON problems, which no
# field rule can catch); {name} placeholders come from the error's context.
_MESSAGES = {
    "missing": "required, but missing",
    "extra_forbidden": "not a field of the order (check its spelling, or remove it)",
    "json_invalid": "not valid JSON: {error}",
    "model_type": "must be a JSON object {{...}}",
    "model_attributes_type": "must be a JSON object {{...}}",
    "dict_type": "must be a JSON object {{...}}",
    "list_type": "must be a JSON list [...]",
    "string_type": "must be text (a JSON string)",
    "too_short": "must list at least {min_length} item",  # only `items` has a length rule
    "too_long": "must list at most {max_length} items",
}
_TENANT_TAGS = {mode.value for mode in TenantMode}


def describe_error(error: ErrorDetails) -> str:
    """One problem as `field.path: rule`, e.g. `items.0.quantity: must be a whole number...`."""
    loc = [
        str(part)
        for index, part in enumerate(error["loc"])
        # Drop the tagged union's branch name (tenant.create.domain_prefix) and validator
        # names pydantic adds inside unions: neither is a field the sender wrote.
        if not (index == 1 and error["loc"][0] == "tenant" and part in _TENANT_TAGS)
        and not str(part).startswith("function-")
    ]
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == RULE_ERROR and "field" in ctx:
        loc.append(str(ctx["field"]))
        message = str(ctx["rule"])
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(ctx.get("discriminator", "mode")).strip("'"))
        message = _one_of(TenantMode)
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(**ctx)
    elif kind == "value_error" and "error" in ctx:
        message = str(ctx["error"])
    else:
        message = error["msg"]
    return f"{'.'.join(loc) or 'order'}: {message}"


def parse_order(raw: str | bytes | dict, countries: Iterable[str] | None = None) -> Order:
    """Parse and validate a submitted order; raise OrderValidationError naming each bad field.

    `countries`: the ISO codes addresses may be in (settings.order_countries; default MX).
    """
    submission = Submission(tuple(countries) if countries else DEFAULT_ORDER_COUNTRIES)
    context = {SUBMISSION: submission}
    try:
        if isinstance(raw, dict):
            return Order.model_validate(raw, context=context)
        return Order.model_validate_json(raw, context=context)
    except ValidationError as exc:
        problems = [describe_error(err) for err in exc.errors(include_url=False)]
        raise OrderValidationError(problems) from exc
