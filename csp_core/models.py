"""The order as order systems submit it (DESIGN.md "Order input"), validated at the boundary.

Every rule here fails with a message that names the field and the rule, before anything starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

ONMICROSOFT_SUFFIX = ".onmicrosoft.com"
DOMAIN_PREFIX_MAX = 27
_PREFIX_RE = re.compile(r"^[a-z0-9]+$")
# Partner Center NCE catalog item: 12-character product id, ':' and a 4-digit SKU id.
SKU_PATTERN = r"^[A-Z0-9]{12}:[0-9]{4}$"
ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
MAX_SEATS_PER_LINE = 10_000

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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
    prefix = value.strip().lower()
    if not prefix:
        raise ValueError("the onmicrosoft prefix must not be empty")
    if len(prefix) > DOMAIN_PREFIX_MAX:
        raise ValueError(
            f"the onmicrosoft prefix must have at most {DOMAIN_PREFIX_MAX} characters "
            f"(got {len(prefix)})"
        )
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            "the onmicrosoft prefix may contain only letters and digits "
            "(no hyphens, dots, spaces or accents)"
        )
    return prefix


class Reseller(_Model):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    name: Text
    email: EmailStr


class Contact(_Model):
    first_name: Text
    last_name: Text
    email: EmailStr


class Address(_Model):
    line1: Text
    line2: Text | None = None
    city: Text
    state: Text
    postal_code: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10)
    ]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        description="ISO 3166-1 alpha-2 country code, upper case"
    )

    @model_validator(mode="after")
    def _mexican_postal_code(self) -> Address:
        if self.country == "MX" and not re.fullmatch(r"[0-9]{5}", self.postal_code):
            raise ValueError("postal_code: a Mexican código postal has exactly 5 digits")
        return self


class Customer(_Model):
    company_name: Text
    contact: Contact
    address: Address


class CreateTenant(_Model):
    """Create a new customer tenant <domain_prefix>.onmicrosoft.com."""

    mode: Literal[TenantMode.CREATE]
    domain_prefix: str

    @field_validator("domain_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return normalize_prefix(value)

    @property
    def domain(self) -> str:
        return f"{self.domain_prefix}{ONMICROSOFT_SUFFIX}"


class LinkTenant(_Model):
    """Link the client's existing tenant, named by its initial onmicrosoft.com domain."""

    mode: Literal[TenantMode.LINK]
    domain: str

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        domain = value.strip().lower()
        if not domain.endswith(ONMICROSOFT_SUFFIX):
            raise ValueError(
                "the tenant domain must be the initial <prefix>.onmicrosoft.com domain"
            )
        normalize_prefix(domain.removesuffix(ONMICROSOFT_SUFFIX))
        return domain


TenantChoice = Annotated[CreateTenant | LinkTenant, Field(discriminator="mode")]


class OrderItem(_Model):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, pattern=SKU_PATTERN)] = Field(
        description="Partner Center catalog item, e.g. CFQ7TTC0LH18:0001"
    )
    product_name: Text
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_LINE, strict=True)]
    term: Term
    billing_cycle: BillingCycle
    unit_price: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]

    @model_validator(mode="after")
    def _term_and_cycle(self) -> OrderItem:
        # New Commerce: a monthly term can only bill monthly; annual and triennial terms
        # can bill monthly or annually.
        if self.term is Term.P1M and self.billing_cycle is not BillingCycle.MONTHLY:
            raise ValueError("billing_cycle: a P1M term can only be billed monthly")
        return self


class Order(_Model):
    order_id: Annotated[str, StringConstraints(pattern=ORDER_ID_PATTERN)]
    reseller: Reseller
    customer: Customer
    tenant: TenantChoice
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _unique_skus(self) -> Order:
        seen: set[str] = set()
        for item in self.items:
            if item.sku in seen:
                raise ValueError(
                    f"items: SKU {item.sku} appears twice; put all its seats on one line"
                )
            seen.add(item.sku)
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


def parse_order(raw: str | bytes | dict) -> Order:
    """Parse and validate an order; raise OrderValidationError naming each bad field."""
    from pydantic import ValidationError

    try:
        if isinstance(raw, dict):
            return Order.model_validate(raw)
        return Order.model_validate_json(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
            loc = loc.replace(".create.", ".").replace(".link.", ".")
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc or 'order'}: {msg}")
        raise OrderValidationError(problems) from exc
