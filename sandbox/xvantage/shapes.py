"""Ingram's shapes as the sandbox's Xvantage face answers them: its error body, answers checked
against the SDK's models, and the Microsoft NCE fields of vendorrequiredinfo."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

TOKEN_PATH = "/oauth/oauth20/token"
PREFIXES = ("/resellers/", "/oauth/")
PREFIX_RE = re.compile(r"^[a-z0-9]{1,27}$")
DATE_RE = re.compile(r"^\d{2}-\d{2}-\d{4}$")
TERMS = ("P1M", "P1Y", "P3Y")
CYCLES = ("monthly", "annual", "triennial")
# Prefilled NCE values the sandbox's Ingram knows about us.
TIER1_MPN = "5068860"
INDIRECT_RESELLER_DOMAIN = "marketplacemx.onmicrosoft.com"


def xv_error(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    """Ingram's error shape (ErrorResponse): {errors: [{id, type, message, fields}]}."""
    body = {"errors": [{"id": secrets.token_hex(8), "type": kind, "message": message}]}
    return JSONResponse(body, status_code=status, headers=headers or None)


def answer(model: type[BaseModel], body: Any) -> Any:
    """Answer `body` only if it parses as the SDK's model: the face cannot drift from it."""
    model.model_validate(body)
    return body


def vendor_required_info(vendor_part_number: str) -> dict[str, Any]:
    """vendorrequiredinfo for a Microsoft NCE product, in the spec's shape."""

    def field(name: str, value: str = "", description: str = "", hint: str = "") -> dict:
        return {
            "attributeName": name,
            "attributeValue": value,
            "attributeDescription": description or name,
            "attributeHint": hint,
            "choices": [],
        }

    domain = field(
        "microsoft_domain", "onmicrosoft.com", "Microsoft Domain Name", "Up to 27 characters long"
    )
    places = ("address", "city", "state", "postal_code", "country")
    new = [
        domain,
        *(field(f"effective_{part}") for part in places),
        field("mca_acceptance", "yes,no", "MCA Acceptance"),
        field("first_name_agreement", description="Customer first name for Agreement"),
        field("last_name_agreement", description="Customer last name for Agreement"),
        field("email_address_agreement", description="Email Address"),
        field("agreement_date", description="Microsoft Customer Agreement Date", hint="MM-DD-YYYY"),
        field("partner_on_record_attestation_accepted", "attestation_accepted"),
        field("address_approved_by_user", "approved"),
    ]  # fmt: skip
    existing = [
        domain,
        field("relationship_url", "yes,no", "Is the customer-partner authorization done?"),
        field("partner_on_record_attestation_accepted", "attestation_accepted"),
    ]  # fmt: skip
    preference = field(
        "tenant_preference", "new,existing", "Please select the desired option for the CSP account"
    )
    preference["choices"] = [
        {"attributeValue": "new", "attributeDescription": "Create new", "choices": new},
        {"attributeValue": "existing", "attributeDescription": "Use existing", "choices": existing},
    ]
    return {
        "quoteNumber": "",
        "ingramPartNumber": "",
        "vendorPartNumber": vendor_part_number,
        "planId": "",
        "planName": vendor_part_number,
        "responseMessages": [],
        "vmfAdditionalAttributes": [],
        # The SDK's shape: a flat list of attributes (the spec's example nests them in
        # per-vendor containers, which the SDK model cannot read).
        "vriAdditionalAttributes": [
            field("tier1_mpn", TIER1_MPN, "Microsoft Partner Number"),
            preference,
            field("indirect_reseller_domain", INDIRECT_RESELLER_DOMAIN),
        ],
    }
