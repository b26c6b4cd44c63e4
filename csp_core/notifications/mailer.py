"""Sending e-mails: the Mailer port, the SMTP adapter (aiosmtplib) and an in-memory fake.

The Message-ID is derived from the e-mail's idempotency key, so a message re-sent after a retry
carries the same Message-ID and can be recognised (and dropped) downstream.
"""

from __future__ import annotations

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from typing import TYPE_CHECKING, Protocol

import aiosmtplib
import structlog
from pydantic import SecretStr

from csp_core.notifications.messages import Email

if TYPE_CHECKING:
    from csp_core.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_MESSAGE_ID_DOMAIN = "csp-orchestrator.local"


class Mailer(Protocol):
    async def send(self, email: Email) -> None: ...


class MailDeliveryError(Exception):
    """The SMTP server could not take the message. Never carries credentials or the body.

    `retryable` is False for what a retry cannot fix (5xx refusals, bad credentials, a server
    lacking AUTH or STARTTLS); connection problems, timeouts and 4xx answers are retryable.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def message_id_for(key: str, domain: str = DEFAULT_MESSAGE_ID_DOMAIN) -> str:
    """The deterministic Message-ID of the e-mail with idempotency key `key`."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<csp.{digest}@{domain}>"


def _domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    _, _, domain = addr.rpartition("@")
    return domain or DEFAULT_MESSAGE_ID_DOMAIN


def build_message(email: Email, sender: str) -> EmailMessage:
    """The MIME message for `email`: UTF-8 text (quoted-printable), html alternative if any."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(email.to)
    if email.cc:
        msg["Cc"] = ", ".join(email.cc)
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id_for(email.key, _domain_of(sender))
    msg["X-CSP-Kind"] = email.kind
    msg["X-CSP-Key"] = email.key
    msg.set_content(email.text, charset="utf-8", cte="quoted-printable")
    if email.html is not None:
        msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _retryable(exc: BaseException) -> bool:
    """Can a later attempt succeed? 4xx answers and connection trouble: yes. 5xx answers (a
    refused recipient, sender or message; failed authentication), an untrusted certificate, or
    a server lacking AUTH/STARTTLS: no, only a person can fix them."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # Raised only when every recipient was refused: permanent only if every refusal is
        # (a retry may reach the temporarily refused ones).
        return any(400 <= r.code < 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 400 <= exc.code < 500
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    # Connection refused/reset, timeouts, disconnects: the server may be back on the next try.
    # Anything else (a server without AUTH or STARTTLS, say) is configuration: retrying won't help.
    return isinstance(exc, OSError)


class SmtpMailer:
    """Delivers e-mails over SMTP (optionally STARTTLS and AUTH)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = False,
        timeout: float = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, username={self.username!r})"

    async def send(self, email: Email) -> None:
        message = build_message(email, self.sender)
        recipients = [addr for _, addr in getaddresses([*email.to, *email.cc]) if addr]
        fields = {"kind": email.kind, "key": email.key, "recipients": len(recipients)}
        password = self._password.get_secret_value() if self._password else None
        try:
            errors, _ = await aiosmtplib.send(
                message,
                sender=parseaddr(self.sender)[1] or self.sender,
                recipients=recipients,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=password,
                # Explicit either way: aiosmtplib's default would try STARTTLS opportunistically.
                start_tls=self.starttls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            retryable = _retryable(exc)
            detail = str(exc) or type(exc).__name__
            if password:
                detail = detail.replace(password, "***")
            log.warning("mail.failed", **fields, error=type(exc).__name__, retryable=retryable)
            # `from None`: the chained library exception adds nothing a reader needs and keeps
            # the error small when it is serialised (e.g. into an activity failure).
            raise MailDeliveryError(
                f"could not send {email.kind} e-mail (key {email.key}) via SMTP "
                f"{self.host}:{self.port}: {type(exc).__name__}: {detail}",
                retryable=retryable,
            ) from None
        if errors:
            # Accepted for some recipients only; re-sending would duplicate it for the others.
            log.warning("mail.partially_refused", **fields, refused=len(errors))
        log.info("mail.sent", **fields)


class RecordingMailer:
    """In-memory Mailer for unit tests: keeps every e-mail it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Email] = []

    async def send(self, email: Email) -> None:
        self.sent.append(email)

    def kinds(self) -> list[str]:
        return [email.kind for email in self.sent]

    def of_kind(self, kind: str) -> list[Email]:
        return [email for email in self.sent if email.kind == kind]
