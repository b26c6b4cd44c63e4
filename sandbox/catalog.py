"""The sandbox's New Commerce catalog: products, SKUs and their availabilities.

A catalog item id is PRODUCT:SKU:AVAILABILITY (Partner Center's catalogItemId). Only the
items listed here exist: a purchase of anything else is refused, as Partner Center refuses
it. An availability can be "rotated" (POST /sandbox/catalog/rotate): the SKU then has a new
availability id and the old one is stale, so a checkout that still names it meets 400019,
as a real checkout does when Microsoft republishes an availability.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

TERMS = frozenset({"P1M", "P1Y", "P3Y"})
# (duration, billing cycle) pairs an availability offers.
_MONTH_AND_YEAR = (("P1M", "monthly"), ("P1Y", "monthly"), ("P1Y", "annual"))
_THREE_YEARS = (("P3Y", "monthly"), ("P3Y", "annual"), ("P3Y", "triennial"))


@dataclass(frozen=True)
class Availability:
    base_id: str  # its id before any rotation (12 characters, as Microsoft's)
    terms: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sku:
    title: str
    availabilities: tuple[Availability, ...]


# product id -> sku id -> Sku. The ids are the ones this project's examples and tests use.
CATALOG: dict[str, dict[str, Sku]] = {
    "CFQ7TTC0LH18": {
        "0001": Sku(
            "Microsoft 365 Business Basic",
            (
                Availability("CFQ7TTC0K971", _MONTH_AND_YEAR),
                Availability("CFQ7TTC0K9T3", _THREE_YEARS),
            ),
        ),
        "0002": Sku(
            "Microsoft 365 Business Basic (no Teams)",
            (Availability("CFQ7TTC0K972", _MONTH_AND_YEAR),),
        ),
    },
    "CFQ7TTC0LDPB": {
        "0001": Sku(
            "Microsoft 365 Business Standard", (Availability("CFQ7TTC0K2DB", _MONTH_AND_YEAR),)
        ),
    },
    "CFQ7TTC0LCHC": {
        "0002": Sku(
            "Microsoft 365 Business Premium",
            (Availability("CFQ7TTC0K2HC", _MONTH_AND_YEAR + _THREE_YEARS),),
        ),
    },
    "CFQ7TTC0LH0Z": {
        "0001": Sku("Sandbox add-on LH0Z", (Availability("CFQ7TTC0K18P", _MONTH_AND_YEAR),)),
    },
    "CFQ7TTC0LF8Q": {
        "0001": Sku("Sandbox product LF8Q", (Availability("CFQ7TTC0K8F1", _MONTH_AND_YEAR),)),
    },
}


def sku_of(product_id: str, sku_id: str) -> Sku | None:
    return CATALOG.get(product_id.upper(), {}).get(sku_id)


def availability_id(base_id: str, generation: int) -> str:
    """The id an availability has after `generation` rotations."""
    if generation == 0:
        return base_id
    digest = hashlib.sha256(f"{base_id}:{generation}".encode()).digest()
    return base_id[:8] + base64.b32encode(digest).decode()[:4]


def generation(world: dict[str, Any], product_id: str, sku_id: str) -> int:
    return int(world.get("catalog_rotations", {}).get(f"{product_id}:{sku_id}", 0))


def rotate(world: dict[str, Any], product_id: str, sku_id: str) -> int:
    rotations = world.setdefault("catalog_rotations", {})
    key = f"{product_id}:{sku_id}"
    rotations[key] = rotations.get(key, 0) + 1
    return rotations[key]


def availabilities(world: dict[str, Any], product_id: str, sku_id: str) -> list[dict[str, Any]]:
    """Partner Center's Availability resources of a SKU, as they are now."""
    sku = sku_of(product_id, sku_id)
    if sku is None:
        return []
    current = generation(world, product_id, sku_id)
    items = []
    for availability in sku.availabilities:
        availability_ = availability_id(availability.base_id, current)
        items.append(
            {
                "id": availability_,
                "productId": product_id,
                "skuId": sku_id,
                "catalogItemId": f"{product_id}:{sku_id}:{availability_}",
                "defaultCurrency": {"code": "USD", "symbol": "$"},
                "segment": "commercial",
                "country": "MX",
                "isPurchasable": True,
                "isRenewable": True,
                "terms": [
                    {"duration": duration, "billingCycle": cycle.capitalize()}
                    for duration, cycle in availability.terms
                ],
                "attributes": {"objectType": "Availability"},
            }
        )
    return items


class CatalogItemProblem(Exception):
    """Why a catalog item id cannot be bought: `stale` (400019) or not valid at all."""

    def __init__(self, description: str, *, stale: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.stale = stale


def check_item(
    world: dict[str, Any], catalog_item_id: str, term: str, cycle: str
) -> tuple[str, Sku]:
    """The SKU a catalog item id names, if it can be bought now for this term and cycle."""
    parts = catalog_item_id.split(":")
    if len(parts) != 3:
        raise CatalogItemProblem(
            f"{catalog_item_id} is not a catalog item id (PRODUCT:SKU:AVAILABILITY)"
        )
    product_id, sku_id, availability_ = parts
    sku = sku_of(product_id, sku_id)
    if sku is None:
        raise CatalogItemProblem(f"{product_id}:{sku_id} is not in the catalog")
    current = generation(world, product_id, sku_id)
    for availability in sku.availabilities:
        if availability_id(availability.base_id, current) == availability_:
            if (term, cycle.lower()) not in availability.terms:
                raise CatalogItemProblem(
                    f"{catalog_item_id} is not offered for a {term} term billed {cycle}"
                )
            return product_id, sku
        if any(availability_id(availability.base_id, g) == availability_ for g in range(current)):
            raise CatalogItemProblem(
                f"Availability {availability_} of {product_id}:{sku_id} was not found.",
                stale=True,
            )
    raise CatalogItemProblem(f"{catalog_item_id} is not in the catalog")


__all__ = [
    "CATALOG",
    "TERMS",
    "Availability",
    "CatalogItemProblem",
    "Sku",
    "availabilities",
    "availability_id",
    "check_item",
    "rotate",
    "sku_of",
]
