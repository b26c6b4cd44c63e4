"""The Xvantage face's own records in the shared world: tokens, submitted v7 orders, and their
processing into tenants and subscriptions (the same world the Partner Center face shows)."""

from __future__ import annotations

import copy
import itertools
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from xi.sdk.resellers.models import (
    AccesstokenResponse,
    OrderCreateV7Request,
    OrderCreateV7Response201,
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
from sandbox.xvantage.shapes import CYCLES, DATE_RE, PREFIX_RE, TERMS, answer


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
        return answer(AccesstokenResponse, body)

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
        if not PREFIX_RE.match(prefix):
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
            if not DATE_RE.match(fields.get("agreement_date") or ""):
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
            elif term not in TERMS or cycle not in CYCLES:
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
        return answer(
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

    def final_statuses(self) -> list[tuple[str, dict[str, Any]]]:
        """The orders that reached their final status since last asked, each once, with the
        order-status event it makes: `im::updated` (provisioned) or `im::voided` (rejected)."""
        self.process_due()
        found = []
        with self.state.lock:
            for request in self.world["requests"].values():
                number = request["order_number"]
                if number is None or request.get("status_announced"):
                    continue
                order = self.world["orders"][number]
                event = "im::voided"
                if not order["rejected"]:
                    placed = self.state.get_order(order["tenant_id"], order["pc_order_id"])
                    if placed["status"] != "completed":
                        continue
                    event = "im::updated"
                request["status_announced"] = True
                found.append((event, copy.deepcopy(order)))
            if found:
                self.state.save()
        return found

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

    # -- Ingram's marketplace (what ops do by hand) -----------------------------------------------

    def marketplace_change(self, subscription_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """What ops do in Ingram's marketplace for the changes XI has no API for (suspend,
        reactivate, seats, cancel, auto-renew): the same world changes, under Microsoft's same
        rules, counted for this face. The workflows never call this: ops do (tests play ops)."""
        marker = CURRENT_FACE.set("xvantage")
        try:
            with self.state.lock:
                tenant_id = next(
                    (
                        tenant
                        for tenant, subs in self.state.world["subscriptions"].items()
                        if subscription_id in subs
                    ),
                    None,
                )
                if tenant_id is None:
                    raise SandboxError(
                        404, "20003", f"Subscription with ID {subscription_id} not found."
                    )
                changed = self.state.update_subscription(tenant_id, subscription_id, changes)
                self.state.save()
                return changed
        finally:
            CURRENT_FACE.reset(marker)
