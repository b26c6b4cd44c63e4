"""Customers: domain check, lookup, creation (after address validation), the reseller
relationship link, and the Microsoft Customer Agreement (MCA) confirmation.

Address validation (POST /v1/validations/address) runs before a customer is created: Partner
Center validates Mexico's state against its list, and an address it refuses is a business
refusal (code ADDRESS_REFUSED) that names our fields (state, postal_code, ...), not its own
property names. A Mexican state is sent as its ISO 3166-2:MX code (CMX, JAL), whatever form
the order used (UNVERIFIED: which form Partner Center expects is not documented).

The MCA: a New Commerce purchase needs the customer's acceptance (error 13605 otherwise). The
partner confirms it with POST /v1/customers/{id}/agreements {primaryContact, dateAgreed,
templateId, type}, the template id coming from GET /v1/agreements?agreementType=...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from pydantic import SecretStr

from csp_core.orders.mexico import mx_state_code
from csp_core.providers.partner_center.resources import customer as parse_customer
from csp_core.providers.partner_center.transport import (
    PartnerCenterTransport,
    log,
    seg,
    sub_request_id,
)
from csp_core.providers.port import (
    CreatedCustomer,
    CustomerAddress,
    NewCustomer,
    ProviderCustomer,
    ProviderError,
)

# The relationship request link is the partner's, not the client's: one look-up an hour.
RELATIONSHIP_LINK_TTL_S = 3600.0
# starts_with on a full domain matches at most a handful of customers; one page is enough.
_FIND_PAGE_SIZE = 50
MCA = "MicrosoftCustomerAgreement"
# The MCA is missing: confirm the customer's acceptance, then buy (developer/error-codes).
MCA_MISSING = "13605"
# "A partner confirmed agreement already exists for the customer": nothing left to do.
MCA_ALREADY_CONFIRMED = "600061"
ADDRESS_REFUSED = "ADDRESS_REFUSED"
_ACCEPTED_ADDRESS = frozenset({"verifiedshippable", "verified"})
# validationMessage names Partner Center's properties; the order knows them as these.
_ADDRESS_FIELDS = {
    "addressline1": "line1",
    "addressline2": "line2",
    "city": "city",
    "region": "state",
    "state": "state",
    "postalcode": "postal_code",
    "country": "country",
}


@dataclass(frozen=True)
class AgreementContact:
    """The client's person who accepted the MCA (its primaryContact)."""

    first_name: str
    last_name: str
    email: str


def address_body(address: CustomerAddress) -> dict[str, Any]:
    state = address.state
    if address.country == "MX":
        state = mx_state_code(state) or state
    body = {
        "addressLine1": address.line1,
        "city": address.city,
        "state": state,
        "postalCode": address.postal_code,
        "country": address.country,
    }
    if address.line2:
        body["addressLine2"] = address.line2
    return body


def _refused_fields(message: str) -> list[str]:
    """Our field names for the properties a validationMessage names ('Region', 'City')."""
    named = re.findall(r"'([A-Za-z0-9]+)'", message)
    fields = [_ADDRESS_FIELDS.get(name.lower(), name) for name in named]
    return list(dict.fromkeys(fields))


class CustomersMixin(PartnerCenterTransport):
    _mca_template_id: str | None = None
    _relationship_link: tuple[str, float] | None = None  # (url, monotonic expiry)

    async def domain_available(self, domain: str) -> bool:
        path = f"/v1/domains/{seg(domain.strip().lower())}"
        response = await self._request("HEAD", path, ok_404=True)
        return response.status_code == 404

    async def find_customer_by_domain(self, domain: str) -> ProviderCustomer | None:
        wanted = domain.strip().lower()
        flt = json.dumps({"Field": "Domain", "Value": wanted, "Operator": "starts_with"})
        data = await self._get_json("/v1/customers", {"size": _FIND_PAGE_SIZE, "filter": flt})
        for item in data.get("items") or []:
            found = parse_customer(item)
            if found.domain == wanted:
                return found
        return None

    async def validate_address(self, address: CustomerAddress, *, request_id: str) -> None:
        """POST /v1/validations/address; a refused address raises ADDRESS_REFUSED (400)."""
        path = "/v1/validations/address"
        answer = await self._post_json(path, address_body(address), request_id=request_id)
        status = str(answer.get("status") or "").replace(" ", "").lower()
        if status in _ACCEPTED_ADDRESS:
            return
        if status == "notvalidated":
            # The validation service could not check it: creating the customer is the test.
            log.warning("partner_center.address_not_validated")
            return
        message = str(answer.get("validationMessage") or "")[:200]
        fields = _refused_fields(message) or ["address"]
        raise ProviderError(
            f"Partner Center refused the customer's address ({answer.get('status') or 'None'}): "
            f"check {', '.join(fields)}" + (f" ({message})" if message else ""),
            status=400,
            code=ADDRESS_REFUSED,
        )

    async def create_customer(self, customer: NewCustomer, *, request_id: str) -> CreatedCustomer:
        domain = customer.domain.strip().lower()
        await self.validate_address(
            customer.address, request_id=sub_request_id(request_id, "address")
        )
        default_address = address_body(customer.address) | {
            "firstName": customer.first_name,
            "lastName": customer.last_name,
        }
        body: dict[str, Any] = {
            "billingProfile": {
                "email": customer.email,
                "culture": customer.culture,
                "language": customer.language,
                "companyName": customer.company_name,
                "defaultAddress": default_address,
            },
            "companyProfile": {"domain": domain},
        }
        if customer.associated_partner_id:
            body["associatedPartnerId"] = customer.associated_partner_id
        data = await self._post_json("/v1/customers", body, request_id=request_id)
        credentials = data.get("userCredentials") or {}
        password = credentials.get("password")
        if not password:
            raise ProviderError(
                "Partner Center created the customer but returned no admin credentials",
                status=502,
                code="MissingCredentials",
            )
        profile = data.get("companyProfile") or {}
        created_domain = str(profile.get("domain") or domain).lower()
        username = str(credentials.get("userName") or "admin")
        # Partner Center answers the bare user name ("admin"); sign-in needs the UPN.
        if "@" not in username:
            username = f"{username}@{created_domain}"
        return CreatedCustomer(
            tenant_id=profile.get("tenantId") or data["id"],
            domain=created_domain,
            admin_username=username,
            admin_password=SecretStr(password),
        )

    async def relationship_request_link(self) -> str:
        """The partner's invitation link (the same for every client): asked again after
        RELATIONSHIP_LINK_TTL_S, not for every invitation."""
        cached = self._relationship_link
        if cached is not None and monotonic() < cached[1]:
            return cached[0]
        data = await self._get_json("/v1/customers/relationshiprequests")
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise ProviderError(
                "Partner Center returned no relationship request url",
                status=502,
                code="InvalidResponse",
            )
        self._relationship_link = (url, monotonic() + RELATIONSHIP_LINK_TTL_S)
        return url

    # -- the Microsoft Customer Agreement ------------------------------------------------------

    async def has_agreement(self, tenant_id: str) -> bool:
        data = await self._get_json(
            f"/v1/customers/{seg(tenant_id)}/agreements", {"agreementType": MCA}
        )
        return bool(data.get("items"))

    async def confirm_agreement(
        self, tenant_id: str, contact: AgreementContact, *, request_id: str
    ) -> None:
        """Record the client's acceptance of the MCA (its contact, accepted now)."""
        body = {
            "primaryContact": {
                "firstName": contact.first_name,
                "lastName": contact.last_name,
                "email": contact.email,
            },
            "templateId": await self._agreement_template(),
            "dateAgreed": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "type": MCA,
        }
        path = f"/v1/customers/{seg(tenant_id)}/agreements"
        try:
            await self._request("POST", path, body=body, request_id=request_id)
        except ProviderError as err:
            if err.code != MCA_ALREADY_CONFIRMED:
                raise
        log.info("partner_center.agreement_confirmed", tenant_id=tenant_id)

    async def agreement_contact(self, tenant_id: str) -> AgreementContact:
        """The customer's billing contact, for a tenant we did not create (a linked one)."""
        profile = await self._get_json(f"/v1/customers/{seg(tenant_id)}/profiles/billing")
        address = profile.get("defaultAddress") or {}
        first = profile.get("firstName") or address.get("firstName")
        last = profile.get("lastName") or address.get("lastName")
        email = profile.get("email")
        if not (first and last and email):
            raise ProviderError(
                "Partner Center needs the client's acceptance of the Microsoft Customer "
                "Agreement (13605) and holds no billing contact to confirm it for: the client's "
                "admin must accept it in the Microsoft 365 admin center",
                status=403,
                code=MCA_MISSING,
            )
        return AgreementContact(first_name=first, last_name=last, email=email)

    async def _agreement_template(self) -> str:
        if self._mca_template_id is None:
            data = await self._get_json("/v1/agreements", {"agreementType": MCA})
            items = [i for i in data.get("items") or [] if i.get("agreementType") == MCA]
            if not items or not items[0].get("templateId"):
                raise ProviderError(
                    "Partner Center listed no Microsoft Customer Agreement template",
                    status=502,
                    code="InvalidResponse",
                )
            self._mca_template_id = str(items[0]["templateId"])
        return self._mca_template_id


__all__ = ["ADDRESS_REFUSED", "MCA_MISSING", "AgreementContact", "CustomersMixin"]
