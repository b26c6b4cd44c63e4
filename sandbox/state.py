"""The sandbox's world: customers, orders, subscriptions, idempotent replays, faults, stats.

Stats count real effects only (what a partner would be billed for or see in its customer
list); faults served and replays are counted apart, so a lost response counts its effect once.

Kept as plain JSON-able dicts in Partner Center's own resource shapes, so persisting is a
json.dump and answering is returning the stored resource. Every write persists the whole
world (it is small) atomically, so restarting the dev stack keeps what was created.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import random
import re
import secrets
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

ONMICROSOFT_SUFFIX = ".onmicrosoft.com"
_PREFIX_RE = re.compile(r"^[a-z0-9]{1,27}$")
TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P3Y": 36}
STAT_KEYS = (
    "customers_created",
    "orders_created",
    "subscriptions_created",
    "subscriptions_suspended",
    "subscriptions_reactivated",
    "relationships_accepted",
    # Subscription changes that took effect (refusals, no-ops and replays are not counted).
    "quantity_changes",
    "subscriptions_cancelled",
    "auto_renew_changes",
    # Microsoft Customer Agreements the partner confirmed (POST .../agreements).
    "agreements_confirmed",
    # Tenants added through the /sandbox/customers control (not Partner Center effects).
    "tenants_added",
    # Orders with the same tenant and line items as an earlier order placed under another
    # MS-RequestId: a double placement when every order has its own tenant (chaos benchmark).
    "duplicate_orders",
    "requests_replayed",
    # Faults apart from effects: total, and by kind (error = 5xx, throttle = 429,
    # lost_response = committed then answered 502 or dropped).
    "faults_served",
    "faults_served_error",
    "faults_served_throttle",
    "faults_served_lost_response",
    # Events pushed to the events URL (sandbox/events.py): delivered, given up (or refused
    # with a 4xx), and attempts that failed and were made again.
    "events_sent",
    "events_failed",
    "events_retried",
)
FaultKind = Literal["error", "throttle", "lost_response"]
# The API face a request came in through: its effects are counted under stats.by_face too.
FACES = ("partner_center", "xvantage")
Face = Literal["partner_center", "xvantage"]
CURRENT_FACE: ContextVar[Face | None] = ContextVar("sandbox_face", default=None)
LostAs = Literal["502", "drop"]

# Stable ids for the seeded world, so demos and tests can name them.
NORTHWIND_TENANT = "4f3c6a1e-2b7d-4e59-9a0c-6d1e8b2f7a31"
FABRIKAM_TENANT = "b8e2d4f6-9c1a-4b3e-8f57-2a6c0d9e1b44"
NORTHWIND_DOMAIN = "northwind.onmicrosoft.com"
FABRIKAM_DOMAIN = "fabrikam.onmicrosoft.com"
# Domains that exist in Microsoft's world (other partners' customers): taken, not visible.
FOREIGN_DOMAINS = ("contoso.onmicrosoft.com", "microsoft.onmicrosoft.com")
# A subscription northwind bought before this system existed (10 days before the world was
# seeded): outside its 168-hour window, for the "adopt" feature and its tests.
NORTHWIND_LEGACY_ORDER = "7d0c2f4e-5a61-4b8e-9c3d-1e2f3a4b5c60"
NORTHWIND_LEGACY_SUBSCRIPTION = "a3e9c1d7-6b2f-4e84-8d15-0c9f7e2b4a18"
NORTHWIND_LEGACY_AGE = timedelta(days=10)

# Microsoft's New Commerce rule, kept here on purpose rather than imported from csp_core: the
# sandbox plays Microsoft, so a mistake in our own window cannot hide behind a shared constant.
# Seat decreases and cancellation are allowed until 168 h after the purchase, the last renewal
# or (for seats added mid-term) the increase; at that instant they are refused.
NCE_WINDOW = timedelta(hours=168)
NCE_WINDOW_DAYS = 7
# Partner Center error codes (developer/error-codes).
CODE_QUANTITY_CANNOT_DECREASE = "800090"
CODE_SUSPENDED = "800091"
CODE_CANCELLATION_WINDOW_PASSED = "900117"
CODE_QUANTITY_WHILE_SUSPENDED = "2001"
CODE_QUANTITY_OUT_OF_RANGE = "2002"
CODE_DELETED = "2011"
CODE_NOT_ACTIVE = "800012"
CODE_INVALID_INPUT = "800002"
# 409 "Subscription is not ready to be updated. Try again after sometime": what a write meets
# while Partner Center renews the subscription.
CODE_NOT_READY = "800082"
# The Microsoft Customer Agreement's template (GET /v1/agreements?agreementType=...).
MCA_TEMPLATE_ID = "117a77b0-9360-443b-8795-c6dedc750cf9"
# What of a subscription its ETag covers: not the fields that age by themselves.
_ETAG_IGNORES = frozenset({"attributes", "refundableQuantity", "cancellationAllowedUntilDate"})
# API requests remembered for GET /sandbox/requests (contract tests), newest last.
REQUEST_LOG_SIZE = 1000


class SandboxError(Exception):
    """A Partner Center style error answer: HTTP status + {code, description}."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def subscription_etag(sub: dict[str, Any]) -> str:
    """The ETag of a subscription's current version: it changes with every change."""
    kept = {key: value for key, value in sub.items() if key not in _ETAG_IGNORES}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:12]).decode()


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def add_months(when: datetime, months: int) -> datetime:
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    # Clamp to the month's last day (Jan 31 + 1 month -> Feb 28/29).
    for day in (when.day, 30, 29, 28):
        try:
            return when.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def commitment_end(created: datetime, term: str) -> datetime:
    """Term end as Partner Center shows it: the inclusive last day, at midnight UTC."""
    end = add_months(created, TERM_MONTHS.get(term, 1)) - timedelta(days=1)
    return end.replace(hour=0, minute=0, second=0, microsecond=0)


def seat_lot(quantity: int, start: datetime) -> dict[str, Any]:
    """Seats bought (at purchase, renewal or a mid-term increase) and refundable until 168 h."""
    return {"quantity": quantity, "allowedUntilDateTime": iso(start + NCE_WINDOW)}


def _password() -> str:
    """A throwaway admin password of the shape Microsoft generates (sandbox only)."""
    alphabet = string.ascii_letters + string.digits
    body = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{secrets.choice(string.ascii_uppercase)}{body}{secrets.randbelow(10)}!"


def _customer_resource(
    tenant_id: str,
    domain: str,
    company_name: str,
    relationship: str,
    billing_profile: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": tenant_id,
        "commerceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"commerce:{tenant_id}")),
        "companyProfile": {
            "tenantId": tenant_id,
            "domain": domain,
            "companyName": company_name,
        },
        "billingProfile": billing_profile,
        "relationshipToPartner": relationship,
        "allowDelegatedAccess": relationship == "reseller",
        "attributes": {"objectType": "Customer"},
    }


def seeded_world() -> dict[str, Any]:
    northwind = _customer_resource(
        NORTHWIND_TENANT,
        NORTHWIND_DOMAIN,
        "Northwind Traders México SA de CV",
        "reseller",
        {
            "email": "ti@northwind.example.mx",
            "culture": "es-MX",
            "language": "es",
            "companyName": "Northwind Traders México SA de CV",
            "defaultAddress": {
                "country": "MX",
                "city": "Ciudad de México",
                "state": "CDMX",
                "addressLine1": "Av. Paseo de la Reforma 222",
                "postalCode": "06600",
                "firstName": "Laura",
                "lastName": "Méndez",
            },
        },
    )
    fabrikam = _customer_resource(
        FABRIKAM_TENANT,
        FABRIKAM_DOMAIN,
        "Fabrikam de Occidente SA de CV",
        "none",
        {
            "email": "sistemas@fabrikam.example.mx",
            "culture": "es-MX",
            "language": "es",
            "companyName": "Fabrikam de Occidente SA de CV",
            "defaultAddress": {
                "country": "MX",
                "city": "Guadalajara",
                "state": "JAL",
                "addressLine1": "Av. Vallarta 1020",
                "postalCode": "44100",
                "firstName": "Jorge",
                "lastName": "Ramírez",
            },
        },
    )
    bought = datetime.now(UTC) - NORTHWIND_LEGACY_AGE
    legacy_item = {
        "lineItemNumber": 0,
        "offerId": "CFQ7TTC0LH18:0001",
        "quantity": 8,
        "termDuration": "P1Y",
        "billingCycle": "monthly",
        "friendlyName": "Microsoft 365 Business Basic",
    }
    legacy_sub = _subscription_resource(
        NORTHWIND_LEGACY_SUBSCRIPTION, NORTHWIND_LEGACY_ORDER, legacy_item, bought, "active"
    )
    legacy_order = _order_resource(
        NORTHWIND_LEGACY_ORDER,
        NORTHWIND_TENANT,
        [{**legacy_item, "subscriptionId": NORTHWIND_LEGACY_SUBSCRIPTION}],
        bought,
        "completed",
    )
    return {
        "version": 1,
        "customers": {NORTHWIND_TENANT: northwind, FABRIKAM_TENANT: fabrikam},
        # tenant -> order id -> order resource
        "orders": {NORTHWIND_TENANT: {NORTHWIND_LEGACY_ORDER: legacy_order}},
        # tenant -> subscription id -> subscription resource
        "subscriptions": {NORTHWIND_TENANT: {NORTHWIND_LEGACY_SUBSCRIPTION: legacy_sub}},
        "ready_at": {},  # order id -> when its subscriptions finish provisioning
        "replays": {},  # "METHOD path requestId" -> {"status", "body"}
        # Sandbox-only bookkeeping (never in Partner Center answers), for /sandbox/world:
        "customer_meta": {},  # tenant -> {"origin": "seed"|"api"|"control", "request_id"}
        "order_meta": {NORTHWIND_LEGACY_ORDER: {"request_id": None, "origin": "seed"}},
        # subscription id -> {"lots": [seat_lot...], "renewing_until", "renewing_calls"}
        "subscription_meta": {
            NORTHWIND_LEGACY_SUBSCRIPTION: {"lots": [seat_lot(legacy_item["quantity"], bought)]}
        },
        # New Commerce (sandbox/commerce.py): tenant -> cart id -> cart; tenant -> the MCA
        # acceptances Partner Center knows (the customer's own, or confirmed by the partner).
        "carts": {},
        "agreements": {NORTHWIND_TENANT: [customer_accepted_mca(bought)]},
        "catalog_rotations": {},
        "stats": dict.fromkeys(STAT_KEYS, 0),
        "stats_by_face": {face: dict.fromkeys(STAT_KEYS, 0) for face in FACES},
    }


def customer_accepted_mca(when: datetime) -> dict[str, Any]:
    """The MCA as a customer accepts it in the Microsoft 365 admin center (with a partner
    invitation): Partner Center knows it, with no partner-confirmed contact."""
    return {
        "type": "MicrosoftCustomerAgreement",
        "templateId": MCA_TEMPLATE_ID,
        "dateAgreed": iso(when),
        "acceptedBy": "customer",
    }


def _subscription_resource(
    sub_id: str, order_id: str, item: dict[str, Any], start: datetime, status: str
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "offerId": item["offerId"],
        "offerName": item.get("friendlyName") or item["offerId"],
        "friendlyName": item.get("friendlyName") or item["offerId"],
        "quantity": item["quantity"],
        "unitType": "Licenses",
        "status": status,
        "orderId": order_id,
        "termDuration": item["termDuration"],
        "billingCycle": item["billingCycle"],
        "autoRenewEnabled": True,
        "creationDate": iso(start),
        # The current term's start: the purchase, then each renewal.
        "effectiveStartDate": iso(start),
        "commitmentEndDate": iso(commitment_end(start, item["termDuration"])),
        "cancellationAllowedUntilDate": iso(start + NCE_WINDOW),
        "refundableQuantity": {
            "totalQuantity": item["quantity"],
            "details": [seat_lot(item["quantity"], start)],
        },
        "attributes": {"objectType": "Subscription"},
    }


def _order_resource(
    order_id: str, tenant_id: str, items: list[dict[str, Any]], created: datetime, status: str
) -> dict[str, Any]:
    return {
        "id": order_id,
        "referenceCustomerId": tenant_id,
        "lineItems": items,
        "status": status,
        "creationDate": iso(created),
        "attributes": {"objectType": "Order"},
    }


@dataclass
class Fault:
    """Make the next `times` matching calls fail (retry tests).

    kind "error" answers `status` before any side effect; kind "lost_response" lets the call
    commit (effect and replay record stored) and then loses the answer: a 502, or the
    connection dropped before the body (`lost_as`).
    """

    path_prefix: str
    status: int | None = None
    method: str | None = None
    retry_after: float | None = None
    times: int = 1
    code: str | None = None
    description: str | None = None
    kind: Literal["error", "lost_response"] = "error"
    lost_as: LostAs = "502"


_FAULT_RATE_KEYS = ("error_rate", "throttle_rate", "lost_response_rate")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FaultSpecError(ValueError):
    """A SANDBOX_FAULTS spec that cannot be used; the message names the key and the rule."""


@dataclass
class FaultProfile:
    """Random faults on every Partner Center call, e.g. from
    `SANDBOX_FAULTS=error_rate=0.2,throttle_rate=0.1,lost_response_rate=0.05,latency_ms=200`.

    One draw per call decides: a 5xx (no effect), a 429 with Retry-After (no effect), or, for
    writes only, "committed then lost". The RNG is seeded so a run can be repeated.
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    lost_response_rate: float = 0.0
    latency_ms: float = 0.0
    retry_after_s: float = 1.0
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for key in _FAULT_RATE_KEYS:
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise FaultSpecError(f"SANDBOX_FAULTS: {key} must be between 0 and 1, got {value}")
        if sum(getattr(self, key) for key in _FAULT_RATE_KEYS) > 1.0:
            raise FaultSpecError(
                "SANDBOX_FAULTS: error_rate + throttle_rate + lost_response_rate must not exceed 1"
            )
        for key in ("latency_ms", "retry_after_s"):
            if getattr(self, key) < 0:
                raise FaultSpecError(f"SANDBOX_FAULTS: {key} must be >= 0")
        self.rng = random.Random(self.seed)

    @classmethod
    def parse(cls, spec: str | None, seed: int | None = None) -> FaultProfile:
        """`key=value,key=value`; keys: error_rate, throttle_rate, lost_response_rate (0..1),
        latency_ms, retry_after_s (>= 0). Empty or None: no faults."""
        values: dict[str, float] = {}
        allowed = (*_FAULT_RATE_KEYS, "latency_ms", "retry_after_s")
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep:
                raise FaultSpecError(f"SANDBOX_FAULTS: {part!r} is not key=value")
            if key not in allowed:
                raise FaultSpecError(
                    f"SANDBOX_FAULTS: unknown key {key!r} (known: {', '.join(allowed)})"
                )
            try:
                values[key] = float(raw)
            except ValueError:
                raise FaultSpecError(
                    f"SANDBOX_FAULTS: {key} must be a number, got {raw.strip()!r}"
                ) from None
        return cls(**values, seed=seed)

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or any(getattr(self, key) for key in _FAULT_RATE_KEYS)

    def draw(self, method: str) -> FaultKind | None:
        roll = self.rng.random()
        if roll < self.error_rate:
            return "error"
        roll -= self.error_rate
        if roll < self.throttle_rate:
            return "throttle"
        roll -= self.throttle_rate
        if roll < self.lost_response_rate and method.upper() in WRITE_METHODS:
            return "lost_response"
        return None


class SandboxState:
    """The in-memory world with optional JSON persistence. All access under one lock."""

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        provisioning_delay_seconds: float = 0.0,
        partner_tenant_id: str = "00000000-0000-0000-0000-00000000a5e0",
        enforce_relationship: bool = False,
    ) -> None:
        self.state_file = state_file
        # Off by default: the sandbox then trusts an ops-confirmed acceptance (the
        # partner_accepted signal) the way Ingram's own records would, even before the
        # simulated client clicks the link. On, orders need an accepted relationship (20002).
        self.enforce_relationship = enforce_relationship
        self.provisioning_delay = timedelta(seconds=max(0.0, provisioning_delay_seconds))
        self.partner_tenant_id = partner_tenant_id
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        # What the API faces received (method, path, headers that matter, JSON body): never
        # persisted, never a token.
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        # Told (tenant id, subscription id) when a subscription changed (sandbox/events.py).
        self.on_subscription_changed: Callable[[str, str], None] | None = None
        self.world = self._load() or seeded_world()

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        if self.state_file is None or not self.state_file.exists():
            return None
        world = json.loads(self.state_file.read_text(encoding="utf-8"))
        world.setdefault("customer_meta", {})
        world.setdefault("order_meta", {})
        world.setdefault("subscription_meta", {})
        world.setdefault("carts", {})
        world.setdefault("agreements", {})
        world.setdefault("catalog_rotations", {})
        stats = world.setdefault("stats", {})
        by_face = world.setdefault("stats_by_face", {})
        for counters in (stats, *(by_face.setdefault(face, {}) for face in FACES)):
            for key in STAT_KEYS:
                counters.setdefault(key, 0)
        return world

    def save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(self.world, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def reset(self) -> None:
        with self.lock:
            self.world = seeded_world()
            self.faults.clear()
            self.requests.clear()
            self.save()

    def bump(self, stat: str, by: int = 1) -> None:
        """Count on the totals, and on the face the current request came through (if any)."""
        self.world["stats"][stat] = self.world["stats"].get(stat, 0) + by
        if (face := CURRENT_FACE.get()) is not None:
            counters = self.world["stats_by_face"][face]
            counters[stat] = counters.get(stat, 0) + by

    def stats(self) -> dict[str, Any]:
        """The totals (what tests and benchmarks read) and `by_face` with the same counters."""
        with self.lock:
            by_face = {face: dict(self.world["stats_by_face"][face]) for face in FACES}
            return {**self.world["stats"], "by_face": by_face}

    # -- faults and replays ----------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method and fault.method.upper() != method.upper():
                    continue
                if not path.startswith(fault.path_prefix):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if fault.kind == "error":  # a lost response is counted once it is lost
                    self.count_fault("throttle" if fault.status == 429 else "error")
                return fault
            return None

    def count_fault(self, kind: FaultKind) -> None:
        with self.lock:
            self.bump("faults_served")
            self.bump(f"faults_served_{kind}")

    def replay(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            stored = self.world["replays"].get(key)
            if stored is not None:
                self.bump("requests_replayed")
                self.save()
            return copy.deepcopy(stored)

    def remember(self, key: str, status: int, body: Any) -> None:
        # Callers hold the lock: the side effect and its replay record land together.
        self.world["replays"][key] = {"status": status, "body": copy.deepcopy(body)}

    # -- customers -------------------------------------------------------------------------------

    def domain_taken(self, domain: str) -> bool:
        domain = domain.lower()
        with self.lock:
            return domain in FOREIGN_DOMAINS or self.customer_by_domain(domain) is not None

    def customer_by_domain(self, domain: str) -> dict[str, Any] | None:
        for customer in self.world["customers"].values():
            if customer["companyProfile"]["domain"] == domain.lower():
                return customer
        return None

    def find_customers(self, field: str, value: str, size: int) -> list[dict[str, Any]]:
        value = value.lower()
        with self.lock:
            found = []
            for customer in self.world["customers"].values():
                profile = customer["companyProfile"]
                haystack = profile["domain"] if field == "domain" else profile["companyName"]
                if haystack.lower().startswith(value):
                    found.append(copy.deepcopy(customer))
            return found[:size]

    def get_customer(self, tenant_id: str) -> dict[str, Any]:
        customer = self.world["customers"].get(tenant_id)
        if customer is None:
            raise SandboxError(404, "CustomerNotFound", f"Customer {tenant_id} was not found.")
        return customer

    def _check_new_domain(self, domain: str) -> str:
        domain = domain.strip().lower()
        prefix = domain.removesuffix(ONMICROSOFT_SUFFIX)
        if not domain.endswith(ONMICROSOFT_SUFFIX) or not _PREFIX_RE.match(prefix):
            raise SandboxError(
                400,
                "InvalidDomain",
                "The domain must be <prefix>.onmicrosoft.com with a prefix of 1-27 "
                "letters and digits.",
            )
        if self.domain_taken(domain):
            raise SandboxError(
                409, "DomainAlreadyExists", f"The domain {domain} is already in use."
            )
        return domain

    def create_customer(
        self,
        domain: str,
        billing_profile: dict[str, Any],
        associated_partner_id: str | None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a tenant; answer the resource plus generated admin credentials."""
        domain = self._check_new_domain(domain)
        tenant_id = str(uuid.uuid4())
        resource = _customer_resource(
            tenant_id, domain, billing_profile.get("companyName", ""), "reseller", billing_profile
        )
        if associated_partner_id:
            resource["associatedPartnerId"] = associated_partner_id
        self.world["customers"][tenant_id] = resource
        self.world["customer_meta"][tenant_id] = {"origin": "api", "request_id": request_id}
        self.bump("customers_created")
        answer = copy.deepcopy(resource)
        answer["userCredentials"] = {"userName": "admin", "password": _password()}
        return answer

    def add_tenant(
        self,
        domain: str,
        company_name: str,
        relationship: str,
        mca_accepted: bool | None = None,
        billing_profile: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A tenant that exists in Microsoft's world (a client's own), for link orders:
        relationship "reseller" (already ours) or "none" (needs the client's acceptance).
        Its client accepted the MCA when it accepted a partner (by default: when it is ours)."""
        with self.lock:
            domain = self._check_new_domain(domain)
            tenant_id = str(uuid.uuid4())
            resource = _customer_resource(
                tenant_id, domain, company_name, relationship, billing_profile or {}
            )
            self.world["customers"][tenant_id] = resource
            if relationship == "reseller" if mca_accepted is None else mca_accepted:
                self.world["agreements"][tenant_id] = [customer_accepted_mca(datetime.now(UTC))]
            self.world["customer_meta"][tenant_id] = {"origin": "control", "request_id": None}
            self.bump("tenants_added")
            self.save()
            return copy.deepcopy(resource)

    def world_summary(self) -> dict[str, Any]:
        """Every customer and order with where it came from (GET /sandbox/world)."""
        with self.lock:
            customers = []
            for tenant_id, customer in self.world["customers"].items():
                meta = self.world["customer_meta"].get(tenant_id, {"origin": "seed"})
                customers.append(
                    {
                        "tenant_id": tenant_id,
                        "domain": customer["companyProfile"]["domain"],
                        "relationship": customer["relationshipToPartner"],
                        "origin": meta.get("origin", "seed"),
                        "request_id": meta.get("request_id"),
                    }
                )
            orders = []
            for tenant_id, by_id in self.world["orders"].items():
                self._refresh(tenant_id)
                domain = self.world["customers"][tenant_id]["companyProfile"]["domain"]
                for order_id, order in by_id.items():
                    meta = self.world["order_meta"].get(order_id, {})
                    orders.append(
                        {
                            "order_id": order_id,
                            "origin": meta.get("origin", "api"),
                            "tenant_id": tenant_id,
                            "domain": domain,
                            "status": order["status"],
                            "request_id": meta.get("request_id"),
                            "line_items": [
                                {"offerId": item["offerId"], "quantity": item["quantity"]}
                                for item in order["lineItems"]
                            ],
                            "creationDate": order["creationDate"],
                        }
                    )
            return {"customers": customers, "orders": orders, "stats": dict(self.world["stats"])}

    def accept_relationship(self, domain: str) -> dict[str, Any]:
        with self.lock:
            customer = self.customer_by_domain(domain)
            if customer is None:
                raise SandboxError(404, "CustomerNotFound", f"No customer with domain {domain}.")
            if customer["relationshipToPartner"] != "reseller":
                customer["relationshipToPartner"] = "reseller"
                customer["allowDelegatedAccess"] = True
                # Accepting a partner's invitation in the admin center accepts the MCA too.
                agreements = self.world["agreements"].setdefault(customer["id"], [])
                if not agreements:
                    agreements.append(customer_accepted_mca(datetime.now(UTC)))
                self.bump("relationships_accepted")
                self.save()
            return copy.deepcopy(customer)

    def relationship_link(self) -> str:
        return (
            "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
            f"&partnerId={self.partner_tenant_id}&msppId=0&DAP=false"
            "#/BillingAccounts/partner-invitation"
        )

    # -- orders and subscriptions ----------------------------------------------------------------

    def _refresh(self, tenant_id: str) -> None:
        """Finish provisioning whose time has come (lazily, on every read or write)."""
        now = datetime.now(UTC)
        orders = self.world["orders"].get(tenant_id, {})
        subs = self.world["subscriptions"].get(tenant_id, {})
        for order_id, order in orders.items():
            if order["status"] != "pending":
                continue
            ready_at = self.world["ready_at"].get(order_id)
            if ready_at is not None and parse_iso(ready_at) > now:
                continue
            for sub in subs.values():
                if sub["orderId"] == order_id and sub["status"] == "pending":
                    sub["status"] = "active"
            order["status"] = "completed"

    @staticmethod
    def _fingerprint(tenant_id: str, line_items: list[dict[str, Any]]) -> str:
        lines = sorted(
            (i["offerId"], i["quantity"], i["termDuration"], i["billingCycle"]) for i in line_items
        )
        return json.dumps([tenant_id, lines])

    def place_order(
        self, tenant_id: str, line_items: list[dict[str, Any]], request_id: str | None = None
    ) -> dict[str, Any]:
        customer = self.get_customer(tenant_id)
        if self.enforce_relationship and customer["relationshipToPartner"] != "reseller":
            raise SandboxError(403, "20002", "There is no commerce relationship with the customer.")
        if not line_items:
            raise SandboxError(400, "InvalidInput", "An order needs at least one line item.")
        now = datetime.now(UTC)
        order_id = str(uuid.uuid4())
        subs = self.world["subscriptions"].setdefault(tenant_id, {})
        items = []
        for item in line_items:
            sub_id = str(uuid.uuid4())
            subs[sub_id] = _subscription_resource(sub_id, order_id, item, now, "pending")
            subs[sub_id]["partnerId"] = self.partner_tenant_id
            self.world["subscription_meta"][sub_id] = {"lots": [seat_lot(item["quantity"], now)]}
            items.append({**item, "subscriptionId": sub_id})
        order = _order_resource(order_id, tenant_id, items, now, "pending")
        fingerprint = self._fingerprint(tenant_id, line_items)
        if any(
            meta.get("fingerprint") == fingerprint and meta.get("request_id") != request_id
            for meta in self.world["order_meta"].values()
        ):
            self.bump("duplicate_orders")
        self.world["orders"].setdefault(tenant_id, {})[order_id] = order
        self.world["order_meta"][order_id] = {"request_id": request_id, "fingerprint": fingerprint}
        self.world["ready_at"][order_id] = iso(now + self.provisioning_delay)
        self.bump("orders_created")
        self.bump("subscriptions_created", len(items))
        self._refresh(tenant_id)
        return copy.deepcopy(order)

    def get_order(self, tenant_id: str, order_id: str) -> dict[str, Any]:
        with self.lock:
            self.get_customer(tenant_id)
            self._refresh(tenant_id)
            order = self.world["orders"].get(tenant_id, {}).get(order_id)
            if order is None:
                raise SandboxError(404, "OrderNotFound", f"Order {order_id} was not found.")
            return copy.deepcopy(order)

    def list_orders(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self.get_customer(tenant_id)
            self._refresh(tenant_id)
            return [copy.deepcopy(o) for o in self.world["orders"].get(tenant_id, {}).values()]

    def list_subscriptions(self, tenant_id: str, order_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            self.get_customer(tenant_id)
            self._refresh(tenant_id)
            subs = self.world["subscriptions"].get(tenant_id, {}).values()
            return [
                copy.deepcopy(self._with_windows(s))
                for s in subs
                if order_id is None or s["orderId"] == order_id
            ]

    def _subscription(self, tenant_id: str, subscription_id: str) -> dict[str, Any]:
        self.get_customer(tenant_id)
        self._refresh(tenant_id)
        sub = self.world["subscriptions"].get(tenant_id, {}).get(subscription_id)
        if sub is None:
            raise SandboxError(404, "20003", f"Subscription with ID {subscription_id} not found.")
        return self._with_windows(sub)

    def get_subscription(self, tenant_id: str, subscription_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._subscription(tenant_id, subscription_id))

    def provisioning_status(self, tenant_id: str, subscription_id: str) -> dict[str, Any]:
        with self.lock:
            sub = self._subscription(tenant_id, subscription_id)
            status = "pending" if sub["status"] == "pending" else "success"
            parts = sub["offerId"].split(":")
            return {"skuId": parts[1] if len(parts) > 1 else parts[0], "status": status}

    # -- New Commerce windows --------------------------------------------------------------------

    def _meta(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The sandbox's own record of a subscription's seat lots (created for old files)."""
        meta = self.world["subscription_meta"].setdefault(sub["id"], {})
        if "lots" not in meta:
            start = parse_iso(sub.get("effectiveStartDate") or sub["creationDate"])
            meta["lots"] = [seat_lot(sub["quantity"], start)]
        return meta

    def _live_lots(self, sub: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        if sub["status"] == "deleted":
            return []
        return [
            lot
            for lot in self._meta(sub)["lots"]
            if lot["quantity"] > 0 and parse_iso(lot["allowedUntilDateTime"]) > now
        ]

    def _with_windows(self, sub: dict[str, Any]) -> dict[str, Any]:
        """Set refundableQuantity and cancellationAllowedUntilDate as of now (they age)."""
        live = self._live_lots(sub, datetime.now(UTC))
        sub["refundableQuantity"] = {
            "totalQuantity": sum(lot["quantity"] for lot in live),
            "details": copy.deepcopy(live),
        }
        start = parse_iso(sub.get("effectiveStartDate") or sub["creationDate"])
        sub["cancellationAllowedUntilDate"] = iso(start + NCE_WINDOW)
        sub.setdefault("attributes", {})["etag"] = subscription_etag(sub)
        return sub

    def _find_subscription(self, subscription_id: str) -> dict[str, Any]:
        for tenant_id, subs in self.world["subscriptions"].items():
            if subscription_id in subs:
                return self._subscription(tenant_id, subscription_id)
        raise SandboxError(404, "20003", f"Subscription with ID {subscription_id} not found.")

    # -- subscription changes (PATCH) ------------------------------------------------------------

    def update_subscription(
        self, tenant_id: str, subscription_id: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply a PATCH of the full resource: the fields that differ are the changes asked.

        A status change goes alone (suspend, reactivate, or `deleted` to cancel); quantity and
        autoRenewEnabled may change together. Every rule is checked before anything changes,
        so a refusal leaves the subscription as it was. Asking for what already holds is a
        no-op (not counted).
        """
        sub = self._subscription(tenant_id, subscription_id)
        now = datetime.now(UTC)
        status = str(patch.get("status") or sub["status"]).lower()
        quantity = patch.get("quantity", sub["quantity"])
        auto_renew = patch.get("autoRenewEnabled", sub["autoRenewEnabled"])
        changes = {
            name
            for name, asked, current in (
                ("status", status, sub["status"]),
                ("quantity", quantity, sub["quantity"]),
                ("autoRenewEnabled", auto_renew, sub["autoRenewEnabled"]),
            )
            if asked != current
        }
        if not changes:
            return copy.deepcopy(sub)
        self._refuse_while_renewing(sub, now)
        current = sub["status"]
        if current == "deleted":
            raise SandboxError(
                400,
                CODE_DELETED,
                f"Subscription with ID {subscription_id} and deleted status can't be updated.",
            )
        if current == "pending":
            raise SandboxError(
                409, "SubscriptionNotProvisioned", "The subscription is still provisioning."
            )
        if "status" in changes:
            if len(changes) > 1:
                raise SandboxError(
                    400,
                    CODE_INVALID_INPUT,
                    "Invalid request input: change the status alone, without other fields.",
                )
            changed = self._change_status(sub, status, now)
            self._subscription_changed(tenant_id, subscription_id)
            return changed
        if "quantity" in changes:
            self._check_quantity(sub, quantity, now)
        if "autoRenewEnabled" in changes:
            self._check_auto_renew(sub, auto_renew)
        if "quantity" in changes:
            self._apply_quantity(sub, quantity, now)
        if "autoRenewEnabled" in changes:
            sub["autoRenewEnabled"] = bool(auto_renew)
            self.bump("auto_renew_changes")
        self._subscription_changed(tenant_id, subscription_id)
        return copy.deepcopy(self._with_windows(sub))

    def _subscription_changed(self, tenant_id: str, subscription_id: str) -> None:
        if self.on_subscription_changed is not None:
            self.on_subscription_changed(tenant_id, subscription_id)

    def _refuse_while_renewing(self, sub: dict[str, Any], now: datetime) -> None:
        meta = self._meta(sub)
        calls = meta.get("renewing_calls") or 0
        until = meta.get("renewing_until")
        if calls > 0:
            meta["renewing_calls"] = calls - 1
        elif until is None or parse_iso(until) <= now:
            return
        raise SandboxError(
            409,
            CODE_NOT_READY,
            "Subscription is not ready to be updated: a renewal is in progress. "
            "Try again after sometime.",
        )

    def _change_status(self, sub: dict[str, Any], status: str, now: datetime) -> dict[str, Any]:
        current = sub["status"]
        if status == "deleted":
            if current == "suspended":
                raise SandboxError(
                    400, CODE_SUSPENDED, "Can't update a subscription with suspended status."
                )
            if current != "active":
                raise SandboxError(
                    400, CODE_NOT_ACTIVE, "This subscription isn't an active subscription."
                )
            if now >= parse_iso(sub["cancellationAllowedUntilDate"]):
                raise SandboxError(
                    400,
                    CODE_CANCELLATION_WINDOW_PASSED,
                    f"You have passed your {NCE_WINDOW_DAYS}-day cancellation window. We are "
                    "unable to cancel your purchase. (cancellationAllowedUntilDate: "
                    f"{sub['cancellationAllowedUntilDate']})",
                )
            sub["status"] = "deleted"
            sub["autoRenewEnabled"] = False
            sub["cancellationDate"] = iso(now)
            self._meta(sub)["lots"] = []
            self.bump("subscriptions_cancelled")
        elif status == "suspended" and current == "active":
            sub["status"] = "suspended"
            # Suspending turns auto-renew off (Partner Center does the same).
            sub["autoRenewEnabled"] = False
            self.bump("subscriptions_suspended")
        elif status == "active" and current == "suspended":
            sub["status"] = "active"
            self.bump("subscriptions_reactivated")
        else:
            raise SandboxError(
                400,
                "InvalidStatusTransition",
                f"The sandbox cannot change a subscription from {current} to {status}.",
            )
        return copy.deepcopy(self._with_windows(sub))

    def _check_quantity(self, sub: dict[str, Any], quantity: Any, now: datetime) -> None:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise SandboxError(
                400,
                CODE_QUANTITY_OUT_OF_RANGE,
                "Subscription quantity isn't within minimum and maximum allowed quantity "
                f"(minimum 1, asked {quantity!r}).",
            )
        if sub["status"] == "suspended":
            raise SandboxError(
                400,
                CODE_QUANTITY_WHILE_SUSPENDED,
                "Subscription quantity can't be increased or decreased while subscription is "
                "being suspended.",
            )
        if sub["status"] != "active":
            raise SandboxError(
                400, CODE_NOT_ACTIVE, "This subscription isn't an active subscription."
            )
        decrease = sub["quantity"] - quantity
        refundable = sum(lot["quantity"] for lot in self._live_lots(sub, now))
        if decrease > refundable:
            raise SandboxError(
                400,
                CODE_QUANTITY_CANNOT_DECREASE,
                f"Subscription quantity can't be decreased by {decrease}: only {refundable} "
                f"seat(s) are refundable now (the {NCE_WINDOW_DAYS}-day window after the "
                "purchase, renewal or increase of those seats has passed).",
            )

    def _apply_quantity(self, sub: dict[str, Any], quantity: int, now: datetime) -> None:
        lots = self._meta(sub)["lots"]
        delta = quantity - sub["quantity"]
        if delta > 0:
            lots.append(seat_lot(delta, now))
        else:
            # Remove the most recently added refundable seats first.
            left = -delta
            for lot in reversed(self._live_lots(sub, now)):
                taken = min(left, lot["quantity"])
                lot["quantity"] -= taken
                left -= taken
                if left == 0:
                    break
            lots[:] = [lot for lot in lots if lot["quantity"] > 0]
        sub["quantity"] = quantity
        self.bump("quantity_changes")

    def _check_auto_renew(self, sub: dict[str, Any], enabled: Any) -> None:
        if not isinstance(enabled, bool):
            raise SandboxError(
                400, CODE_INVALID_INPUT, "Invalid request input: autoRenewEnabled is a boolean."
            )
        if sub["status"] == "suspended":
            raise SandboxError(
                400, CODE_SUSPENDED, "Can't update a subscription with suspended status."
            )
        if sub["status"] != "active":
            raise SandboxError(
                400, CODE_NOT_ACTIVE, "This subscription isn't an active subscription."
            )

    # -- controls (not Partner Center) -----------------------------------------------------------

    def backdate_subscription(self, subscription_id: str, by: timedelta) -> dict[str, Any]:
        """Move a subscription's purchase (and term, and seat windows) `by` into the past."""
        with self.lock:
            sub = self._find_subscription(subscription_id)
            for key in ("creationDate", "effectiveStartDate"):
                if sub.get(key):
                    sub[key] = iso(parse_iso(sub[key]) - by)
            start = parse_iso(sub["effectiveStartDate"])
            sub["commitmentEndDate"] = iso(commitment_end(start, sub["termDuration"]))
            for lot in self._meta(sub)["lots"]:
                lot["allowedUntilDateTime"] = iso(parse_iso(lot["allowedUntilDateTime"]) - by)
            self._with_windows(sub)
            self.save()
            return copy.deepcopy(sub)

    def mark_renewing(
        self, subscription_id: str, *, seconds: float | None, calls: int | None
    ) -> dict[str, Any]:
        """Answer 409 to changes of this subscription for `seconds`, or for the next `calls`."""
        with self.lock:
            sub = self._find_subscription(subscription_id)
            meta = self._meta(sub)
            meta["renewing_calls"] = calls or 0
            meta["renewing_until"] = (
                iso(datetime.now(UTC) + timedelta(seconds=seconds)) if seconds else None
            )
            self.save()
            return {
                "subscription_id": subscription_id,
                "renewing_until": meta["renewing_until"],
                "renewing_calls": meta["renewing_calls"],
            }

    def renew_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Complete a renewal now: a new term starts, with a new 168-hour window."""
        with self.lock:
            sub = self._find_subscription(subscription_id)
            if sub["status"] != "active":
                raise SandboxError(
                    400, CODE_NOT_ACTIVE, "This subscription isn't an active subscription."
                )
            now = datetime.now(UTC)
            sub["effectiveStartDate"] = iso(now)
            sub["commitmentEndDate"] = iso(commitment_end(now, sub["termDuration"]))
            meta = self._meta(sub)
            meta["lots"] = [seat_lot(sub["quantity"], now)]
            meta["renewing_calls"], meta["renewing_until"] = 0, None
            self._with_windows(sub)
            self.save()
            tenant_id = next(
                t for t, subs in self.world["subscriptions"].items() if subscription_id in subs
            )
            self._subscription_changed(tenant_id, subscription_id)
            return copy.deepcopy(sub)
