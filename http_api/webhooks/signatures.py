"""Checking who sent an event, before anything is read from it.

Ingram: `x-hub-signature` is base64(HMAC-SHA512(shared secret, eventId)) (developer.
ingrammicro.com/reseller/article/how-use-webhook-secret-key). It covers the event id only, not
the body: the defence against a replayed or altered event is the dedupe by eventId and the
refusal of events older than WEBHOOK_MAX_AGE (or more than WEBHOOK_MAX_SKEW in the future).

Partner Center: `Authorization: Signature <base64>` is RSA-SHA256 (PKCS#1 v1.5) over the raw
body, with the certificate at `X-MS-Certificate-Url`. Only an https URL on a host listed in
PARTNER_CENTER_WEBHOOK_CERT_HOSTS is fetched (outside production, a loopback host listed there
may be plain http: the dev stack's sandbox); certificates are cached by URL for a day.

A refusal is a Problem (401, or 503 when the certificate cannot be fetched, so the sender
retries); secrets and signatures are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from csp_core.settings import Deployment, Settings, is_local_url
from http_api.problems import Problem

CERT_CACHE_SECONDS = 24 * 3600
CERT_FETCH_TIMEOUT_S = 10.0


def _refused(slug: str, detail: str) -> Problem:
    return Problem(401, slug, detail, headers={"WWW-Authenticate": "Signature"})


# -------------------------------------------------------------------------- Ingram
def ingram_signature(secret: str, event_id: str) -> str:
    """What Ingram sends in x-hub-signature for this event id (also what the sandbox sends)."""
    digest = hmac.new(secret.encode(), event_id.encode(), hashlib.sha512).digest()
    return base64.b64encode(digest).decode()


def check_ingram(settings: Settings, signature: str | None, event_id: object) -> None:
    if settings.ingram_webhook_secret is None:
        raise _refused(
            "bad-signature", "Ingram events are not accepted here: INGRAM_WEBHOOK_SECRET is unset"
        )
    if not signature:
        raise _refused("unsigned-event", "the event is not signed: x-hub-signature is missing")
    if not isinstance(event_id, str) or not event_id:
        raise _refused("bad-signature", "the event has no eventId: its signature covers it")
    expected = ingram_signature(settings.ingram_webhook_secret.get_secret_value(), event_id)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise _refused("bad-signature", "x-hub-signature does not match the event id")


def check_fresh(settings: Settings, stamp: object, now: datetime | None = None) -> None:
    """The event's time is within WEBHOOK_MAX_AGE in the past and WEBHOOK_MAX_SKEW ahead."""
    when = parse_time(stamp)
    if when is None:
        raise _refused("stale-event", "the event has no valid eventTimeStamp")
    now = now or datetime.now(UTC)
    if when < now - timedelta(seconds=settings.webhook_max_age):
        raise _refused(
            "stale-event",
            f"the event is from {when:%Y-%m-%dT%H:%M:%SZ}, older than "
            f"{settings.webhook_max_age} s: refused (a replay, or delivered too late)",
        )
    if when > now + timedelta(seconds=settings.webhook_max_skew):
        raise _refused("stale-event", f"the event is from {when:%Y-%m-%dT%H:%M:%SZ}, in the future")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -------------------------------------------------------------------------- Partner Center
def cert_url_allowed(settings: Settings, url: str) -> bool:
    parts = urlsplit(url)
    host, netloc = (parts.hostname or "").lower(), parts.netloc.lower()
    allowed = {h.strip().lower() for h in settings.partner_center_webhook_cert_hosts}
    if not host or (host not in allowed and netloc not in allowed):
        return False
    if parts.scheme == "https":
        return True
    local_dev = settings.deployment is not Deployment.PRODUCTION and is_local_url(url)
    return parts.scheme == "http" and local_dev


class CertificateCache:
    """Certificates by URL, fetched with httpx and kept for a day."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._certs: dict[str, tuple[float, x509.Certificate]] = {}
        self._transport = transport

    async def get(self, url: str) -> x509.Certificate:
        cached = self._certs.get(url)
        if cached is not None and time.monotonic() - cached[0] < CERT_CACHE_SECONDS:
            return cached[1]
        try:
            async with httpx.AsyncClient(
                timeout=CERT_FETCH_TIMEOUT_S, transport=self._transport
            ) as http:
                response = await http.get(url)
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise Problem(
                503,
                "certificate-unavailable",
                "the signing certificate could not be fetched; nothing was done: send again",
                headers={"Retry-After": "30"},
                log_reason=f"{url}: {type(err).__name__}",
            ) from None
        try:
            cert = _load_cert(response.content)
        except ValueError:
            raise _refused(
                "untrusted-certificate", "X-MS-Certificate-Url does not serve a certificate"
            ) from None
        self._certs[url] = (time.monotonic(), cert)
        return cert


def _load_cert(data: bytes) -> x509.Certificate:
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


async def check_partner_center(
    settings: Settings,
    certs: CertificateCache,
    authorization: str | None,
    cert_url: str | None,
    body: bytes,
) -> None:
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "signature" or not encoded.strip():
        raise _refused("unsigned-event", "the event is not signed: Authorization: Signature …")
    if not cert_url:
        raise _refused("untrusted-certificate", "X-MS-Certificate-Url is missing")
    if not cert_url_allowed(settings, cert_url):
        raise _refused(
            "untrusted-certificate",
            f"the certificate's host ({urlsplit(cert_url).netloc or cert_url}) is not trusted: "
            "not https on a host in PARTNER_CENTER_WEBHOOK_CERT_HOSTS",
        )
    try:
        signature = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _refused("bad-signature", "the signature is not base64") from None
    cert = await certs.get(cert_url)
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _refused("untrusted-certificate", "the signing certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _refused("untrusted-certificate", "the signing certificate's key is not RSA")
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise _refused("bad-signature", "the signature does not match the body") from None
