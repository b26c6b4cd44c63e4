"""The sandbox's outgoing events: what Ingram and Partner Center push to a reseller's webhooks.

With an events URL (`--events-url` / SANDBOX_EVENTS_URL, the receiver's base, e.g.
http://127.0.0.1:8000/v1/webhooks) the sandbox sends, signed the real way:
- Ingram's order-status event to `<url>/ingram/order-status` when an Xvantage order reaches
  its final status (provisioned: `im::updated`, or rejected: `im::voided`), with
  `x-hub-signature` = base64(HMAC-SHA512(shared secret, eventId)) (`--events-secret` /
  SANDBOX_EVENTS_SECRET);
- Partner Center's events to `<url>/partner-center`: `reseller-relationship-accepted-by-customer`
  when the client clicks the invitation (POST /sandbox/customers/{domain}/accept-relationship)
  and `subscription-updated` when a subscription changes (PATCH, marketplace change, renewal),
  signed RSA-SHA256 over the body (`Authorization: Signature <base64>`) with a key and
  self-signed certificate made at start, served at /sandbox/events/certificate
  (`X-MS-Certificate-Url`).

Events go out from a thread of their own, never from the request that caused them: queued,
and retried with backoff (1 s, 2 s, 4 s … 60 s; 10 attempts, as Partner Center) while the
receiver is down or answers 5xx/429. /sandbox/stats counts events_sent, events_failed (given up,
or refused with a 4xx) and events_retried (attempts that will be made again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sandbox.state import SandboxState, iso

log = structlog.get_logger("sandbox.events")
CERTIFICATE_PATH = "/sandbox/events/certificate"
RELATIONSHIP_ACCEPTED = "reseller-relationship-accepted-by-customer"
SUBSCRIPTION_UPDATED = "subscription-updated"
ATTEMPTS, FIRST_DELAY_S, MAX_DELAY_S = 10, 1.0, 60.0


@dataclass
class _Delivery:
    path: str
    body: bytes
    headers: dict[str, str]
    what: str
    attempt: int = 0
    due: float = field(default_factory=time.monotonic)


class Signer:
    """An RSA key and a self-signed certificate, as Partner Center signs its events."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox events")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, body: bytes) -> str:
        signature = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()


class EventSender:
    """Queues the world's events and delivers them from its own thread (see the module)."""

    def __init__(
        self,
        state: SandboxState,
        url: str | None = None,
        secret: str | None = None,
        *,
        public_url: str | None = None,
        attempts: int = ATTEMPTS,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.state = state
        self.url = url.rstrip("/") if url else None
        self._secret = secret or ""
        self.public_url = public_url
        self.attempts, self.first_delay_s, self.max_delay_s = attempts, first_delay_s, max_delay_s
        self.tick = tick  # called each round (the Xvantage face's final statuses)
        self.signer = Signer()
        self._queue: list[_Delivery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sandbox-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what is sent ------------------------------------------------------------------------
    def ingram_order_status(self, event: str, order: dict[str, Any]) -> None:
        event_id = str(uuid.uuid4())
        body = {
            "topic": "resellers/orders",
            "event": event,
            "eventTimeStamp": iso(datetime.now(UTC)),
            "eventId": event_id,
            "resource": [
                {
                    "eventType": event,
                    "orderNumber": order["ingramOrderNumber"],
                    "customerOrderNumber": order["customerOrderNumber"],
                    "orderEntryTimeStamp": order["ingramOrderDate"],
                    "lines": [
                        {  # shipped: a license line is complete once provisioned
                            "LineNumber": str(line.get("lineItemNumber", n) + 1),
                            "lineStatus": "Shipped" if event == "im::updated" else "Open",
                            "vendorPartNumber": line["offerId"],
                            "requestedQuantity": str(line["quantity"]),
                            "shippedQuantity": str(line["quantity"] * (event == "im::updated")),
                        }
                        for n, line in enumerate(order.get("lines") or [])
                    ],
                }
            ],
        }
        raw = json.dumps(body).encode()
        digest = hmac.new(self._secret.encode(), event_id.encode(), hashlib.sha512).digest()
        headers = {"x-hub-signature": base64.b64encode(digest).decode()}
        self._enqueue("/ingram/order-status", raw, headers, f"ingram {event}")

    def partner_center(self, event: str, resource_path: str, resource_name: str) -> None:
        base = self.public_url or ""
        body = {
            "EventName": event,
            "ResourceUri": f"{base}{resource_path}",
            "ResourceName": resource_name,
            "AuditUri": None,
            "ResourceChangeUtcDate": iso(datetime.now(UTC)),
        }
        raw = json.dumps(body).encode()
        headers = {
            "Authorization": f"Signature {self.signer.sign(raw)}",
            "X-MS-Certificate-Url": f"{base}{CERTIFICATE_PATH}",
        }
        self._enqueue("/partner-center", raw, headers, f"partner-center {event}")

    def relationship_accepted(self, customer: dict[str, Any]) -> None:
        self.partner_center(RELATIONSHIP_ACCEPTED, f"/v1/customers/{customer['id']}", "customer")

    def subscription_updated(self, tenant_id: str, subscription_id: str) -> None:
        path = f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}"
        self.partner_center(SUBSCRIPTION_UPDATED, path, "subscription")

    # -- delivery ----------------------------------------------------------------------------
    def _enqueue(self, path: str, body: bytes, headers: dict[str, str], what: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._queue.append(_Delivery(path, body, headers, what))

    def _count(self, stat: str) -> None:
        with self.state.lock:
            self.state.bump(stat)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.2):
                if self.tick is not None:
                    try:
                        self.tick()
                    except Exception:  # noqa: BLE001 - the sender must outlive a bad round
                        log.exception("sandbox.events.tick_failed")
                now = time.monotonic()
                with self._lock:
                    due = [d for d in self._queue if d.due <= now]
                    self._queue = [d for d in self._queue if d.due > now]
                for delivery in due:
                    self._deliver(http, delivery)

    def _deliver(self, http: httpx.Client, delivery: _Delivery) -> None:
        assert self.url is not None
        delivery.attempt += 1
        headers = {"Content-Type": "application/json", **delivery.headers}
        try:
            response = http.post(self.url + delivery.path, content=delivery.body, headers=headers)
            status: int | None = response.status_code
        except httpx.HTTPError as err:
            status, reason = None, type(err).__name__
        if status is not None and status < 300:
            self._count("events_sent")
            log.info("sandbox.event_sent", what=delivery.what, attempt=delivery.attempt)
            return
        retryable = status is None or status >= 500 or status == 429
        reason = str(status) if status is not None else reason
        if not retryable or delivery.attempt >= self.attempts:
            self._count("events_failed")
            log.warning("sandbox.event_failed", what=delivery.what, answer=reason)
            return
        self._count("events_retried")
        delay = min(self.max_delay_s, self.first_delay_s * 2 ** (delivery.attempt - 1))
        delivery.due = time.monotonic() + delay
        log.info("sandbox.event_retry", what=delivery.what, answer=reason, in_s=delay)
        with self._lock:
            self._queue.append(delivery)
