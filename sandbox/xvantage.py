"""The sandbox's Xvantage face: Ingram Micro's reseller API over the same world.

One state, two faces: an order placed here creates (or uses) the tenant and places the
subscriptions in the same world the Partner Center face shows, so both count the same effects
(`/sandbox/stats` `by_face.xvantage`). What it speaks (the `xi-sdk-resellers` models validate
every request it takes and every answer it gives):

- `POST|GET /oauth/oauth20/token`: client credentials -> a bearer token that expires after
  `token_ttl_seconds` (`POST /sandbox/xvantage/expire-tokens` expires every token now).
- `POST /resellers/v7/vendorrequiredinfo`: the Microsoft NCE fields of each product.
- `POST /resellers/v7/orders`: asynchronous; answers a confirmation number and processes the
  order `order_delay_seconds` later (on the next call after that): a new tenant
  (`tenant_preference=new`) or an existing one, then the subscriptions. A refusal (domain
  taken, unknown tenant, no relationship when enforced) shows as a Canceled order with the
  reason in its notes. A retry with the same IM-CorrelationID answers the first answer; another
  order with a customerOrderNumber already used is refused (Ingram's default).
- `GET /resellers/v6/orders/search` and `GET /resellers/v6.1/orders/{number}`: our orders,
  their lines and subscriptions (serviceContractInfo).

Auth, faults and latency are applied by the app's gate (sandbox/app.py), as on /v1.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from xi.sdk.resellers.models import (
    AccesstokenResponse,
    OrderCreateV7Request,
    OrderCreateV7Response201,
    OrderDetailB2B,
    OrderSearchResponse,
    VendorRequiredInfoRequest,
    VendorRequiredInforesponseInner,
)

from csp_core.providers.xvantage import tenant_key
from sandbox.state import (
    CURRENT_FACE,
    NORTHWIND_DOMAIN,
    NORTHWIND_LEGACY_ORDER,
    NORTHWIND_TENANT,
    ONMICROSOFT_SUFFIX,
    SandboxError,
    SandboxState,
    iso,
    parse_iso,
)

TOKEN_PATH = "/oauth/oauth20/token"
PREFIXES = ("/resellers/", "/oauth/")
_PREFIX_RE = re.compile(r"^[a-z0-9]{1,27}$")
_DATE_RE = re.compile(r"^\d{2}-\d{2}-\d{4}$")
_TERMS = ("P1M", "P1Y", "P3Y")
_CYCLES = ("monthly", "annual", "triennial")
# Prefilled NCE values the sandbox's Ingram knows about us.
TIER1_MPN = "5068860"
INDIRECT_RESELLER_DOMAIN = "marketplacemx.onmicrosoft.com"
M = TypeVar("M", bound=BaseModel)


def xv_error(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    """Ingram's error shape (ErrorResponse): {errors: [{id, type, message, fields}]}."""
    body = {"errors": [{"id": secrets.token_hex(8), "type": kind, "message": message}]}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _answer(model: type[BaseModel], body: Any) -> Any:
    """Answer `body` only if it parses as the SDK's model: the face cannot drift from it."""
    model.model_validate(body)
    return body


def _vri(vendor_part_number: str) -> dict[str, Any]:
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


class XvantageFace:
    """The Xvantage face's own records, kept in the shared world under "xvantage"."""

    def __init__(
        self,
        state: SandboxState,
        *,
        client_id: str,
        client_secret: str,
        order_delay_seconds: float,
        token_ttl_seconds: float,
    ) -> None:
        self.state = state
        self.client_id = client_id
        self.client_secret = client_secret
        self.order_delay = timedelta(seconds=max(0.0, order_delay_seconds))
        self.token_ttl = token_ttl_seconds
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry (in memory only)
        self.tokens_issued = 0
        self._numbers = itertools.count(1)

    # -- the face's slice of the world ----------------------------------------------------------

    @property
    def world(self) -> dict[str, Any]:
        world = self.state.world.get("xvantage")
        if world is None:
            world = self.state.world["xvantage"] = {"requests": {}, "orders": {}}
            self._seed(world)
        return world

    def _seed(self, world: dict[str, Any]) -> None:
        """Northwind's legacy order, placed by us through Ingram before the orchestrator (with
        our tenant key), so the Ingram adapter sees northwind as ours."""
        pc_order = self.state.world["orders"].get(NORTHWIND_TENANT, {}).get(NORTHWIND_LEGACY_ORDER)
        if pc_order is None:
            return
        world["orders"]["MX-000000"] = {
            "ingramOrderNumber": "MX-000000",
            "ingramOrderDate": pc_order["creationDate"][:10],
            "customerOrderNumber": "LEGACY-NORTHWIND",
            "endCustomerOrderNumber": tenant_key(NORTHWIND_DOMAIN),
            "domain": NORTHWIND_DOMAIN,
            "tenant_id": NORTHWIND_TENANT,
            "pc_order_id": NORTHWIND_LEGACY_ORDER,
            "end_user": {"companyName": "Northwind Traders México SA de CV"},
            "lines": [],
            "rejected": None,
        }

    # -- auth -----------------------------------------------------------------------------------

    def issue_token(self, client_id: str | None, client_secret: str | None) -> dict[str, Any]:
        if client_id != self.client_id or client_secret != self.client_secret:
            raise SandboxError(401, "invalid_client", "The client credentials are not valid.")
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.tokens_issued += 1
        body = {"access_token": token, "token_type": "Bearer", "expires_in": f"{self.token_ttl:g}"}
        return _answer(AccesstokenResponse, body)

    def token_valid(self, token: str) -> bool:
        with self.state.lock:
            expires = self.tokens.get(token)
            return expires is not None and time.monotonic() < expires

    def expire_tokens(self) -> int:
        with self.state.lock:
            count = len(self.tokens)
            self.tokens.clear()
            return count

    # -- orders ---------------------------------------------------------------------------------

    def submit(self, body: OrderCreateV7Request, correlation: str) -> dict[str, Any]:
        """Check the request, remember it, answer a confirmation (processed later)."""
        fields = {
            a.attribute_name: a.attribute_value for a in body.vmf_additional_attributes or [] if a
        }
        preference = fields.get("tenant_preference")
        prefix = (fields.get("microsoft_domain") or "").lower()
        problems = []
        if preference not in ("new", "existing"):
            problems.append("tenant_preference must be new or existing")
        if not _PREFIX_RE.match(prefix):
            problems.append("microsoft_domain must be 1-27 letters and digits")
        if fields.get("partner_on_record_attestation_accepted") != "attestation_accepted":
            problems.append("partner_on_record_attestation_accepted is required")
        if preference == "new":
            if fields.get("mca_acceptance") != "yes":
                problems.append("mca_acceptance must be yes for a new tenant")
            for name in ("first_name_agreement", "last_name_agreement", "email_address_agreement",
                         "effective_address", "effective_city", "effective_state",
                         "effective_postal_code", "effective_country"):  # fmt: skip
                if not fields.get(name):
                    problems.append(f"{name} is required for a new tenant")
            if not _DATE_RE.match(fields.get("agreement_date") or ""):
                problems.append("agreement_date must be MM-DD-YYYY")
        if preference == "existing" and fields.get("relationship_url") != "yes":
            problems.append("relationship_url must be yes: the customer must authorize us first")
        lines = []
        for line in body.lines or []:
            attrs = {
                a.attribute_name: a.attribute_value
                for a in line.vmf_additional_attributes_lines or []
            }
            term, cycle = attrs.get("term_duration"), attrs.get("billing_cycle")
            if not line.vendor_part_number or not line.quantity or line.quantity < 1:
                problems.append("each line needs a vendorPartNumber and a quantity of at least 1")
            elif term not in _TERMS or cycle not in _CYCLES:
                problems.append(
                    f"line {line.customer_line_number}: term_duration and billing_cycle"
                )
            else:
                lines.append({
                    "lineItemNumber": len(lines), "offerId": line.vendor_part_number,
                    "quantity": line.quantity, "termDuration": term, "billingCycle": cycle,
                    "friendlyName": line.notes, "customerLineNumber": line.customer_line_number,
                })  # fmt: skip
        if not lines:
            problems.append("an order needs at least one line")
        if not body.customer_order_number:
            problems.append("customerOrderNumber is required")
        if problems:
            raise SandboxError(400, "/errors/validation-failed", "; ".join(problems))
        with self.state.lock:
            used = {r["customerOrderNumber"] for r in self.world["requests"].values()}
            if body.customer_order_number in used:
                raise SandboxError(
                    400,
                    "/errors/duplicate-customer-order-number",
                    f"customerOrderNumber {body.customer_order_number} was used already.",
                )
            confirmation = f"MX-I-T-{int(time.time())}{next(self._numbers):04d}"
            end_user = body.end_user_info.to_dict() if body.end_user_info else {}
            self.world["requests"][confirmation] = {
                "confirmationNumber": confirmation,
                "correlation": correlation,
                "customerOrderNumber": body.customer_order_number,
                "endCustomerOrderNumber": body.end_customer_order_number,
                "domain": prefix + ONMICROSOFT_SUFFIX,
                "preference": preference,
                "fields": fields,
                "end_user": end_user,
                "lines": lines,
                "process_at": iso(datetime.now(UTC) + self.order_delay),
                "order_number": None,
            }
        return _answer(
            OrderCreateV7Response201,
            {
                "quoteNumber": "",
                "confirmationNumber": confirmation,
                "message": "Thank you for submitting the order request, it's currently under "
                "process. We will notify you of the status via the Order Status webhook.",
            },
        )

    def process_due(self, *, force: bool = False) -> int:
        """Process the orders whose time has come (lazily, on every call of this face)."""
        now, processed = datetime.now(UTC), 0
        # Effects of Ingram's processing count for this face, whatever call triggered it.
        marker = CURRENT_FACE.set("xvantage")
        try:
            with self.state.lock:
                for request in self.world["requests"].values():
                    due = force or parse_iso(request["process_at"]) <= now
                    if request["order_number"] is None and due:
                        self._process(request)
                        processed += 1
                if processed:
                    self.state.save()
        finally:
            CURRENT_FACE.reset(marker)
        return processed

    def _process(self, request: dict[str, Any]) -> None:
        state = self.state
        number = f"MX-{len(self.world['orders']):06d}"
        order = {
            "ingramOrderNumber": number,
            "ingramOrderDate": datetime.now(UTC).date().isoformat(),
            "customerOrderNumber": request["customerOrderNumber"],
            "endCustomerOrderNumber": request["endCustomerOrderNumber"],
            "domain": request["domain"],
            "tenant_id": None,
            "pc_order_id": None,
            "end_user": request["end_user"],
            "lines": request["lines"],
            "rejected": None,
        }
        request["order_number"] = number
        self.world["orders"][number] = order
        try:
            tenant_id = self._tenant(request)
            if state.enforce_relationship:
                customer = state.get_customer(tenant_id)
                if customer["relationshipToPartner"] != "reseller":
                    raise SandboxError(403, "20002", "No commerce relationship with the customer.")
            items = [
                {k: v for k, v in line.items() if k != "customerLineNumber"}
                for line in request["lines"]
            ]
            pc_order = state.place_order(tenant_id, items, request["confirmationNumber"])
        except SandboxError as err:
            order["rejected"] = f"{err.code}: {err.description}"
            return
        order["tenant_id"], order["pc_order_id"] = tenant_id, pc_order["id"]

    def _tenant(self, request: dict[str, Any]) -> str:
        domain, state = request["domain"], self.state
        if request["preference"] == "existing":
            customer = state.customer_by_domain(domain)
            if customer is None:
                raise SandboxError(404, "CustomerNotFound", f"No Microsoft tenant {domain}.")
            return customer["id"]
        fields, end_user = request["fields"], request["end_user"]
        billing = {
            "email": fields["email_address_agreement"],
            "culture": "es-MX",
            "language": "es",
            "companyName": end_user.get("companyName") or domain,
            "defaultAddress": {
                "country": fields["effective_country"],
                "city": fields["effective_city"],
                "state": fields["effective_state"],
                "addressLine1": fields["effective_address"],
                "postalCode": fields["effective_postal_code"],
                "firstName": fields["first_name_agreement"],
                "lastName": fields["last_name_agreement"],
            },
        }
        created = state.create_customer(domain, billing, None, request["confirmationNumber"])
        return created["id"]

    def search(self, params: dict[str, str]) -> dict[str, Any]:
        self.process_due()
        with self.state.lock:
            found = [
                self._summary(order)
                for order in self.world["orders"].values()
                if all(order.get(key) == value for key, value in params.items() if value)
            ]
        body = {
            "recordsFound": len(found),
            "pageSize": 100,
            "pageNumber": 1,
            "orders": found,
        }
        return _answer(OrderSearchResponse, body)

    def _summary(self, order: dict[str, Any]) -> dict[str, Any]:
        status = self._status(order)
        return {
            "ingramOrderNumber": order["ingramOrderNumber"],
            "ingramOrderDate": order["ingramOrderDate"],
            "customerOrderNumber": order["customerOrderNumber"],
            "vendorName": "Microsoft",
            "endUserCompanyName": order["end_user"].get("companyName"),
            "orderStatus": {"Canceled": "CANCELLED", "Delivered": "CLOSED"}.get(status, "OPEN"),
        }

    def _status(self, order: dict[str, Any]) -> str:
        if order["rejected"]:
            return "Canceled"
        pc = self._pc_order(order)
        return "Delivered" if pc and pc["status"] == "completed" else "Processing"

    def _pc_order(self, order: dict[str, Any]) -> dict[str, Any] | None:
        if order["tenant_id"] is None:
            return None
        return self.state.get_order(order["tenant_id"], order["pc_order_id"])

    def details(self, number: str) -> dict[str, Any]:
        self.process_due()
        with self.state.lock:
            order = self.world["orders"].get(number)
            if order is None:
                raise SandboxError(404, "/errors/not-found", f"Order {number} was not found.")
            pc = self._pc_order(order)
            subs = {}
            if pc is not None:
                for sub in self.state.list_subscriptions(order["tenant_id"], pc["id"]):
                    subs[sub["id"]] = sub
            lines = [
                self._line(order, item, subs)
                for item in (pc["lineItems"] if pc else order["lines"])
            ]
            body = {
                "ingramOrderNumber": number,
                "ingramOrderDate": order["ingramOrderDate"],
                "orderType": "S",
                "customerOrderNumber": order["customerOrderNumber"],
                "endCustomerOrderNumber": order["endCustomerOrderNumber"],
                "orderStatus": self._status(order),
                "notes": order["rejected"] or f"Microsoft tenant {order['domain']}",
                "endUserInfo": copy.deepcopy(order["end_user"]),
                "lines": lines,
                "additionalAttributes": [
                    {"attributeName": "microsoft_domain", "attributeValue": order["domain"]}
                ],
            }
        return _answer(OrderDetailB2B, body)

    @staticmethod
    def _line(order: dict[str, Any], item: dict[str, Any], subs: dict[str, Any]) -> dict[str, Any]:
        number = item.get("lineItemNumber", 0) + 1
        line: dict[str, Any] = {
            "subOrderNumber": f"{order['ingramOrderNumber']}-11",
            "ingramOrderLineNumber": f"{number:03d}",
            "customerLineNumber": item.get("customerLineNumber") or str(number),
            "vendorPartNumber": item["offerId"],
            "vendorName": "Microsoft",
            "partDescription": item.get("friendlyName"),
            "quantityOrdered": item["quantity"],
            "lineStatus": "Canceled" if order["rejected"] else "In Progress",
        }
        sub = subs.get(item.get("subscriptionId", ""))
        if sub is None:
            return line
        status = {"active": "Active", "pending": "Pending", "suspended": "Suspended",
                  "deleted": "Canceled", "expired": "Expired", "disabled": "Disabled"}  # fmt: skip
        line["lineStatus"] = "Delivered" if sub["status"] != "pending" else "In Progress"
        line["quantityConfirmed"] = sub["quantity"]
        line["serviceContractInfo"] = {
            "contractInfo": {
                "contractNumber": sub["id"],
                "contractStatus": status.get(sub["status"], sub["status"]),
                "contractStartDate": sub["effectiveStartDate"],
                "contractEndDate": sub["commitmentEndDate"],
                "contractDuration": sub["termDuration"],
            },
            "subscriptions": {
                "subscriptionId": sub["id"],
                "subscriptionTerm": sub["termDuration"],
                "renewalTerm": sub["termDuration"],
                "billingModel": sub["billingCycle"],
                "subcriptionStartDate": sub["effectiveStartDate"],
                "subcriptionEndDate": sub["commitmentEndDate"],
            },
            "licenseInfo": {"quantity": str(sub["quantity"])},
        }
        line["additionalAttributes"] = [
            {"attributeName": "auto_renew", "attributeValue": str(sub["autoRenewEnabled"]).lower()}
        ]
        return line


def _headers_problem(request: Request, *, sender_required: bool) -> str | None:
    headers = request.headers
    checks = [
        ("IM-CustomerNumber", 10, True),
        ("IM-CountryCode", 2, True),
        ("IM-CorrelationID", 32, True),
        ("IM-SenderID", 32, sender_required),
    ]
    for name, limit, required in checks:
        value = headers.get(name)
        if value is None:
            if required:
                return f"{name} is required"
        elif not value or len(value) > limit:
            return f"{name} must be 1-{limit} characters"
    return None


def router(face: XvantageFace) -> APIRouter:
    api = APIRouter()
    state = face.state

    async def _body(request: Request, model: type[M]) -> M:
        try:
            return model.model_validate(await request.json())
        except (ValueError, ValidationError) as err:
            raise SandboxError(400, "/errors/validation-failed", f"Invalid body: {err}") from None

    def _check_headers(request: Request, *, sender_required: bool = False) -> None:
        if (problem := _headers_problem(request, sender_required=sender_required)) is not None:
            raise SandboxError(400, "/errors/validation-failed", problem)

    @api.post(TOKEN_PATH)
    async def token_form(request: Request) -> dict[str, Any]:
        # application/x-www-form-urlencoded, parsed here (no multipart dependency for this).
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            raise SandboxError(400, "unsupported_grant_type", "use client_credentials")
        return face.issue_token(form.get("client_id"), form.get("client_secret"))

    @api.get(TOKEN_PATH)
    async def token_query(
        grant_type: str = Query(), client_id: str = Query(), client_secret: str = Query()
    ) -> dict[str, Any]:
        """The spec's (and SDK's) form: credentials in the query string."""
        if grant_type != "client_credentials":
            raise SandboxError(400, "unsupported_grant_type", "use client_credentials")
        return face.issue_token(client_id, client_secret)

    @api.post("/resellers/v7/vendorrequiredinfo")
    async def vendor_required_info(request: Request) -> list[dict[str, Any]]:
        _check_headers(request, sender_required=True)
        body = await _body(request, VendorRequiredInfoRequest)
        return [
            _answer(VendorRequiredInforesponseInner, _vri(p.vendor_part_number or p.plan_id or ""))
            for p in body.products or []
        ]

    @api.post("/resellers/v7/orders")
    async def create_order(request: Request) -> JSONResponse:
        _check_headers(request)
        body = await _body(request, OrderCreateV7Request)
        correlation = request.headers["IM-CorrelationID"]
        key = f"POST {request.url.path} {correlation}"
        face.process_due()
        with state.lock:
            if (stored := state.replay(key)) is not None:
                return JSONResponse(stored["body"], status_code=stored["status"])
            answer = face.submit(body, correlation)
            state.remember(key, 200, answer)
            state.save()
        return JSONResponse(answer)

    @api.get("/resellers/v6/orders/search")
    async def search(
        request: Request,
        customerOrderNumber: str | None = None,  # noqa: N803 - Ingram's query names
        endCustomerOrderNumber: str | None = None,  # noqa: N803
        ingramOrderNumber: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        _check_headers(request)
        return face.search(
            {
                "customerOrderNumber": customerOrderNumber or "",
                "endCustomerOrderNumber": endCustomerOrderNumber or "",
                "ingramOrderNumber": ingramOrderNumber or "",
            }
        )

    @api.get("/resellers/v6.1/orders/{ordernumber}")
    async def details(request: Request, ordernumber: str) -> dict[str, Any]:
        _check_headers(request)
        return face.details(ordernumber)

    @api.post("/sandbox/xvantage/expire-tokens")
    async def expire_tokens() -> dict[str, int]:
        """Every token issued so far stops working now (a token expiring mid-run)."""
        return {"expired": face.expire_tokens()}

    @api.post("/sandbox/xvantage/process-now")
    async def process_now() -> dict[str, int]:
        """Process every submitted v7 order now, whatever the delay (tests, demos)."""
        return {"processed": face.process_due(force=True)}

    @api.get("/sandbox/xvantage")
    async def summary() -> dict[str, Any]:
        face.process_due()
        with state.lock:
            return {
                "tokens_issued": face.tokens_issued,
                "requests": copy.deepcopy(list(face.world["requests"].values())),
                "orders": copy.deepcopy(list(face.world["orders"].values())),
            }

    return api
