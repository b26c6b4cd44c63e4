"""The sandbox's New Commerce rules: address validation, catalog availabilities, carts and
their checkout, the Microsoft Customer Agreement (MCA) and the billing profile.

Refusals follow Partner Center's (developer/error-codes, cart-resources): a cart line naming
no valid catalog item carries an `error` (CatalogItemIdIsNotValid) and its cart cannot be
checked out (800009); a checkout whose availability is no longer current answers 404 400019;
a customer without an MCA acceptance answers 403 13605. The MCA is accepted by the customer
itself (seeded, or by accepting a partner's invitation) or confirmed by the partner with
POST /v1/customers/{id}/agreements.
"""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from csp_core.orders.mexico import mx_state_code
from sandbox import catalog
from sandbox.state import (
    MCA_TEMPLATE_ID,
    SandboxError,
    SandboxState,
    iso,
    parse_iso,
)

MCA = "MicrosoftCustomerAgreement"
MICROSOFT_CLOUD_AGREEMENT = "MicrosoftCloudAgreement"
_MCLOUDA_TEMPLATE_ID = "998b88de-aa99-4388-a42c-1b3517d49490"
CART_LIFETIME = timedelta(days=7)
_CYCLES = frozenset({"monthly", "annual", "triennial"})
# A postal code no Mexican address has: the sandbox's way to have an address refused.
NONEXISTENT_POSTAL_CODE = "00000"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _lower_keys(body: dict[str, Any]) -> dict[str, Any]:
    """Partner Center reads property names in any case (its docs show both)."""
    return {str(key).lower(): value for key, value in body.items()}


def address_problems(address: dict[str, Any]) -> list[str]:
    """Partner Center's names of the properties of an address that do not validate."""
    fields = _lower_keys(address)
    problems = []
    for name, prop in (("addressline1", "AddressLine1"), ("city", "City")):
        if not str(fields.get(name) or "").strip():
            problems.append(prop)
    country = str(fields.get("country") or "")
    if not re.fullmatch(r"[A-Z]{2}", country):
        problems.append("Country")
    state = str(fields.get("state") or "").strip()
    postal = str(fields.get("postalcode") or "").strip()
    if country == "MX":
        if mx_state_code(state) is None:
            problems.append("Region")
        if not re.fullmatch(r"[0-9]{5}", postal) or postal == NONEXISTENT_POSTAL_CODE:
            problems.append("PostalCode")
    else:
        if not state:
            problems.append("Region")
        if not postal:
            problems.append("PostalCode")
    return problems


def validate_address(body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/validations/address: an AddressValidationResponse."""
    fields = _lower_keys(body)
    original = {
        key: fields[name]
        for key, name in (
            ("country", "country"),
            ("city", "city"),
            ("state", "state"),
            ("addressLine1", "addressline1"),
            ("addressLine2", "addressline2"),
            ("postalCode", "postalcode"),
        )
        if fields.get(name) is not None
    }
    problems = address_problems(body)
    if not problems:
        return {
            "originalAddress": original,
            "suggestedAddresses": [original],
            "status": "VerifiedShippable",
        }
    named = ", ".join(f"'{prop}'" for prop in problems)
    return {
        "originalAddress": original,
        "suggestedAddresses": [],
        "status": "None",
        "validationMessage": f"Address field invalid for property: {named}",
    }


class Commerce:
    """New Commerce on the shared world (state.world); callers hold no lock."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- catalog --------------------------------------------------------------------------------

    def availabilities(self, tenant_id: str, product_id: str, sku_id: str) -> dict[str, Any]:
        with self.state.lock:
            self.state.get_customer(tenant_id)
            if product_id.upper() not in catalog.CATALOG:
                raise SandboxError(404, "400013", "Product wasn't found.")
            if catalog.sku_of(product_id, sku_id) is None:
                raise SandboxError(404, "400018", "SKU wasn't found.")
            items = catalog.availabilities(self.state.world, product_id.upper(), sku_id)
        return {"totalCount": len(items), "items": items, "attributes": _COLLECTION}

    def rotate(self, catalog_item_id: str) -> dict[str, Any]:
        """Control: republish a SKU's availabilities; the ids known so far become stale."""
        product_id, _, rest = catalog_item_id.partition(":")
        sku_id = rest.split(":")[0]
        if catalog.sku_of(product_id, sku_id) is None:
            raise SandboxError(404, "400018", f"{product_id}:{sku_id} is not in the catalog.")
        with self.state.lock:
            catalog.rotate(self.state.world, product_id.upper(), sku_id)
            self.state.save()
            items = catalog.availabilities(self.state.world, product_id.upper(), sku_id)
        return {"catalogItemIds": [item["catalogItemId"] for item in items]}

    # -- carts ----------------------------------------------------------------------------------

    def create_cart(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/customers/{id}/carts (called under the state lock)."""
        self.state.get_customer(tenant_id)
        fields = _lower_keys(body)
        lines = fields.get("lineitems")
        if not isinstance(lines, list) or not lines:
            raise SandboxError(400, "800002", "Invalid request input: lineItems is required.")
        attested = fields.get("partneronrecordattestationaccepted") is True
        now = datetime.now(UTC)
        cart_id = str(uuid.uuid4())
        items = [self._cart_line(index, line, attested) for index, line in enumerate(lines)]
        cart = {
            "id": cart_id,
            "creationTimestamp": iso(now),
            "lastModifiedTimestamp": iso(now),
            "expirationTimestamp": iso(now + CART_LIFETIME),
            "lastModifiedUser": self.state.partner_tenant_id,
            "status": "Active",
            "lineItems": items,
            "links": {
                "self": {
                    "uri": f"/customers/{tenant_id}/carts/{cart_id}",
                    "method": "GET",
                    "headers": [],
                }
            },
            "attributes": {"objectType": "Cart"},
        }
        self.state.world["carts"].setdefault(tenant_id, {})[cart_id] = {
            "cart": cart,
            "result": None,
        }
        return copy.deepcopy(cart)

    def _cart_line(self, index: int, raw: Any, attested: bool) -> dict[str, Any]:
        line = _lower_keys(raw) if isinstance(raw, dict) else {}
        item_id = str(line.get("catalogitemid") or "")
        term = str(line.get("termduration") or "")
        cycle = str(line.get("billingcycle") or "").lower()
        quantity = line.get("quantity")
        answer: dict[str, Any] = {
            "id": line.get("id", index),
            "catalogItemId": item_id,
            "quantity": quantity,
            "currencyCode": "USD",
            "billingCycle": cycle,
            "termDuration": term,
            "provisioningContext": {},
            "orderGroup": "0",
        }
        if line.get("friendlyname"):
            answer["friendlyName"] = str(line["friendlyname"])
        problem: tuple[str, str] | None = None
        if not attested:
            problem = ("AttestationNotAccepted", "PartnerOnRecordAttestationAccepted is required.")
        elif isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            problem = ("InvalidInput", "quantity must be a whole number of at least 1.")
        elif cycle not in _CYCLES or term not in catalog.TERMS:
            problem = ("InvalidInput", "billingCycle and termDuration are required.")
        else:
            try:
                catalog.check_item(self.state.world, item_id, term, cycle)
            except catalog.CatalogItemProblem as err:
                if not err.stale:  # a stale availability is only found at checkout
                    problem = ("CatalogItemIdIsNotValid", err.description)
        if problem is not None:
            answer["error"] = {"errorCode": problem[0], "errorDescription": problem[1]}
        return answer

    def checkout(self, tenant_id: str, cart_id: str, request_id: str | None) -> dict[str, Any]:
        """POST .../carts/{cartId}/checkout (under the state lock); a cart checked out before
        answers its first result again (Partner Center's checkout is idempotent per cart)."""
        customer = self.state.get_customer(tenant_id)
        stored = self.state.world["carts"].get(tenant_id, {}).get(cart_id)
        if stored is None:
            raise SandboxError(404, "800008", "Unable to retrieve cart ID.")
        if stored["result"] is not None:
            return copy.deepcopy(stored["result"])
        cart = stored["cart"]
        if any(line.get("error") for line in cart["lineItems"]):
            raise SandboxError(400, "800009", "Error in Cart item(s).")
        if parse_iso(cart["expirationTimestamp"]) <= datetime.now(UTC):
            raise SandboxError(400, "800009", "The cart has expired.")
        if self.state.enforce_relationship and customer["relationshipToPartner"] != "reseller":
            raise SandboxError(403, "20002", "There is no commerce relationship with the customer.")
        if not self.state.world["agreements"].get(tenant_id):
            raise SandboxError(
                403,
                "13605",
                "Either a partner confirmation of the customer acceptance of the Microsoft "
                "Customer Agreement must be provided or the customer must accept the Microsoft "
                "Customer Agreement in the Microsoft Admin Center before you can complete this "
                "purchase.",
            )
        items = [self._order_item(line) for line in cart["lineItems"]]
        order = self.state.place_order(tenant_id, items, request_id)
        result = {
            "orders": [order],
            "orderErrors": [],
            "attributes": {"objectType": "CartCheckoutResult"},
        }
        cart["status"] = "Ordered"
        stored["result"] = copy.deepcopy(result)
        return result

    def _order_item(self, line: dict[str, Any]) -> dict[str, Any]:
        try:
            _, sku = catalog.check_item(
                self.state.world, line["catalogItemId"], line["termDuration"], line["billingCycle"]
            )
        except catalog.CatalogItemProblem as err:
            if err.stale:
                raise SandboxError(404, "400019", err.description) from None
            raise SandboxError(400, "800009", err.description) from None
        return {
            "lineItemNumber": int(line["id"]),
            "offerId": line["catalogItemId"],
            "quantity": line["quantity"],
            "termDuration": line["termDuration"],
            "billingCycle": line["billingCycle"],
            "friendlyName": line.get("friendlyName") or sku.title,
        }

    def check_order_items(self, items: list[dict[str, Any]]) -> None:
        """The legacy order API (POST .../orders): its offerIds must be current catalog items
        too (a PRODUCT:SKU without its availability is no offer id)."""
        for item in items:
            try:
                catalog.check_item(
                    self.state.world, item["offerId"], item["termDuration"], item["billingCycle"]
                )
            except catalog.CatalogItemProblem as err:
                if err.stale:
                    raise SandboxError(404, "400019", err.description) from None
                raise SandboxError(400, "800004", f"Invalid offer ID: {err.description}") from None

    # -- agreements -----------------------------------------------------------------------------

    @staticmethod
    def agreement_metadata(agreement_type: str | None) -> dict[str, Any]:
        """GET /v1/agreements?agreementType= (MicrosoftCloudAgreement when not given)."""
        known = {
            MCA: (MCA_TEMPLATE_ID, "https://aka.ms/customeragreement"),
            MICROSOFT_CLOUD_AGREEMENT: (_MCLOUDA_TEMPLATE_ID, "https://aka.ms/microsoftcloudagreement"),
        }  # fmt: skip
        wanted = agreement_type or MICROSOFT_CLOUD_AGREEMENT
        items = [
            {"templateId": template, "agreementType": kind, "agreementLink": link, "versionRank": 0}
            for kind, (template, link) in known.items()
            if wanted in ("*", kind)
        ]
        return {"totalCount": len(items), "items": items, "attributes": _COLLECTION}

    def customer_agreements(self, tenant_id: str, agreement_type: str | None) -> dict[str, Any]:
        with self.state.lock:
            self.state.get_customer(tenant_id)
            wanted = agreement_type or MICROSOFT_CLOUD_AGREEMENT
            items = [
                {k: v for k, v in agreement.items() if k != "acceptedBy"}
                for agreement in self.state.world["agreements"].get(tenant_id, [])
                if wanted in ("*", agreement["type"])
            ]
        return {"totalCount": len(items), "items": items, "attributes": _COLLECTION}

    def confirm_agreement(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/customers/{id}/agreements (under the state lock)."""
        self.state.get_customer(tenant_id)
        fields = _lower_keys(body)
        contact = _lower_keys(fields.get("primarycontact") or {})
        missing = [
            f"primaryContact.{name}"
            for name in ("firstName", "lastName", "email")
            if not str(contact.get(name.lower()) or "").strip()
        ]
        if not missing and not _EMAIL_RE.match(str(contact["email"])):
            missing.append("primaryContact.email")
        if fields.get("type") != MCA:
            missing.append("type")
        if fields.get("templateid") != MCA_TEMPLATE_ID:
            missing.append("templateId")
        try:
            agreed = parse_iso(str(fields.get("dateagreed")))
            if agreed.tzinfo is None or agreed > datetime.now(UTC) + timedelta(minutes=5):
                missing.append("dateAgreed")
        except ValueError:
            missing.append("dateAgreed")
        if missing:
            raise SandboxError(400, "800002", f"Invalid request input: {', '.join(missing)}.")
        primary = {
            "firstName": contact["firstname"],
            "lastName": contact["lastname"],
            "email": contact["email"],
        }
        if contact.get("phonenumber"):
            primary["phoneNumber"] = str(contact["phonenumber"])
        agreements = self.state.world["agreements"].setdefault(tenant_id, [])
        if any(a.get("primaryContact") == primary for a in agreements):
            raise SandboxError(
                409, "600061", "A partner confirmed agreement already exists for the customer."
            )
        agreement = {
            "userId": str(uuid.uuid4()),
            "primaryContact": primary,
            "templateId": MCA_TEMPLATE_ID,
            "dateAgreed": str(fields["dateagreed"]),
            "type": MCA,
            "acceptedBy": "partner",
        }
        agreements.append(agreement)
        self.state.bump("agreements_confirmed")
        return {k: v for k, v in agreement.items() if k != "acceptedBy"}

    def billing_profile(self, tenant_id: str) -> dict[str, Any]:
        """GET /v1/customers/{id}/profiles/billing."""
        with self.state.lock:
            billing = copy.deepcopy(self.state.get_customer(tenant_id).get("billingProfile") or {})
        address = billing.get("defaultAddress") or {}
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"billing:{tenant_id}")),
            "firstName": address.get("firstName"),
            "lastName": address.get("lastName"),
            "email": billing.get("email"),
            "culture": billing.get("culture"),
            "language": billing.get("language"),
            "companyName": billing.get("companyName"),
            "defaultAddress": address,
            "attributes": {"objectType": "CustomerBillingProfile"},
        }


_COLLECTION = {"objectType": "Collection"}

__all__ = ["NONEXISTENT_POSTAL_CODE", "Commerce", "address_problems", "validate_address"]
