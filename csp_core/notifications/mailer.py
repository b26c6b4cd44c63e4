"""Sending e-mails: the Mailer port, the SMTP adapter (aiosmtplib, pooled connections) and an
in-memory fake. The MIME form of a message and its deterministic Message-ID: mime.py.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from email.utils import getaddresses, parseaddr
from typing import TYPE_CHECKING, Protocol

import aiosmtplib
import structlog
from pydantic import SecretStr

from csp_core.notifications.messages import Email
from csp_core.notifications.mime import build_message
from csp_core.notifications.smtp_pool import DEFAULT_IDLE_TIMEOUT, DEFAULT_SIZE, SmtpPool

if TYPE_CHECKING:
    from csp_core.settings import Settings

log = structlog.get_logger(__name__)
# 421: the server is closing the channel (an idle timeout, a restart).
_CLOSING = 421


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
    """Delivers e-mails over SMTP (optionally STARTTLS and AUTH), over a small pool of open
    connections (smtp_pool.py): concurrent sends use separate connections, at most
    `max_connections` at once; a connection the server dropped while idle is replaced without
    failing the send."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = False,
        timeout: float = 30,
        *,
        max_connections: int = DEFAULT_SIZE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self._envelope_sender = parseaddr(sender)[1] or sender
        self._local_hostname: str | None = None
        self.pool = SmtpPool(
            self._connect, size=max_connections, idle_timeout=idle_timeout, wait=timeout
        )

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

    async def aclose(self) -> None:
        """Close the idle connections (QUIT): at the worker's shutdown."""
        await self.pool.aclose()

    async def send(self, email: Email) -> None:
        message = build_message(email, self.sender)
        recipients = [addr for _, addr in getaddresses([*email.to, *email.cc]) if addr]
        fields = {"kind": email.kind, "key": email.key, "recipients": len(recipients)}
        try:
            errors = await self._deliver(recipients, message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            retryable = _retryable(exc)
            detail = str(exc) or type(exc).__name__
            password = self._password.get_secret_value() if self._password else None
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

    async def _deliver(self, recipients: list[str], message: bytes) -> dict[str, Exception]:
        """One mail transaction on a pooled connection; the recipients refused (if only some
        were). The connection goes back to the pool when the transaction ended cleanly, or was
        refused and reset (RSET); after anything else it is closed."""
        smtp, reused = await self.pool.acquire()
        reusable = False
        utf8 = not (self._envelope_sender.isascii() and all(r.isascii() for r in recipients))
        try:
            try:
                await self._mail_from(smtp, utf8)
            except (aiosmtplib.SMTPException, OSError) as exc:
                if not (reused and _dropped(exc)):
                    raise
                # The server dropped (or is closing) a connection that waited in the pool,
                # before it took anything of this message: the same message on a new
                # connection, once.
                log.info("mail.reconnect", host=self.host, port=self.port, reason=repr(exc))
                smtp.close()
                smtp = await self.pool.open()
                await self._mail_from(smtp, utf8)
            refused = await self._transaction(smtp, recipients, message, utf8)
            reusable = True
            return refused
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            # The server refused this message; the connection can carry the next one once the
            # envelope is reset.
            reusable = await _reset(smtp)
            raise
        finally:
            self.pool.release(smtp, reusable=reusable)

    async def _mail_from(self, smtp: aiosmtplib.SMTP, utf8: bool) -> None:
        if not utf8:
            await smtp.mail(self._envelope_sender, timeout=self.timeout)
            return
        # A non-ASCII address needs the server's SMTPUTF8 (as aiosmtplib's send_message).
        if not smtp.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "An address containing non-ASCII characters was provided, but SMTPUTF8 is not "
                "supported by this server"
            )
        await smtp.mail(
            self._envelope_sender, options=["SMTPUTF8"], encoding="utf-8", timeout=self.timeout
        )

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, recipients: list[str], message: bytes, utf8: bool
    ) -> dict[str, Exception]:
        """RCPT TO each recipient, then DATA (what aiosmtplib's sendmail does after MAIL FROM)."""
        refused: dict[str, Exception] = {}
        encoding = "utf-8" if utf8 else "ascii"
        for address in recipients:
            try:
                await smtp.rcpt(address, encoding=encoding, timeout=self.timeout)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[address] = exc
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))  # type: ignore[arg-type]
        await smtp.data(message, timeout=self.timeout)
        return refused

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new connection, greeted (EHLO), with STARTTLS and AUTH when configured."""
        if self._local_hostname is None:
            # What aiosmtplib looks up for every connection (in a thread): once per mailer.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            local_hostname=self._local_hostname,
            username=self.username,
            password=self._password.get_secret_value() if self._password else None,
            # Explicit either way: aiosmtplib's default would try STARTTLS opportunistically.
            start_tls=self.starttls,
            timeout=self.timeout,
        )
        await smtp.connect()
        try:
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except BaseException:
            smtp.close()
            raise
        return smtp


def _dropped(exc: BaseException) -> bool:
    """Did the server hang up (or announce it is hanging up) rather than refuse?"""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == _CLOSING
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError)


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    """RSET after a refusal; False when the connection cannot be reused (the server hung up or
    refuses the reset too)."""
    if not smtp.is_connected:
        return False
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


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
