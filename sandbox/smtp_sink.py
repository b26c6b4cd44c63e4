"""A local SMTP sink: accepts every message and keeps it as a .eml file in an outbox folder.

It is a real SMTP server (aiosmtpd), so the mailer is exercised over a real SMTP conversation,
and what "was sent" can be opened in any mail client or read back by tests.

    python -m sandbox.smtp_sink --port 1025 --outbox .data/outbox [--refuse '*@rechazado.mx']
    SMTP_SINK_REFUSE='*@rechazado.mx' make run     # the same refusal in the local stack

Tests steer it like a real mail server misbehaving:
- `refuse(pattern, code=550)`: RCPT TO for matching recipients (exact address or glob, case
  insensitive) is answered `code` (5xx: permanent, 4xx: transient) until `accept_all()`;
- `outage()` (or `stop()` ... `start()`): nothing listens on the port, connections are refused;
- `SmtpSink(..., idle_timeout=s)`: a client silent for `s` seconds gets 421 and is hung up on;
  `unavailable(421)` ... `available()`: the server answers but refuses every MAIL FROM;
- `deliveries()`, `duplicates()`: what was kept, with Message-ID and X-CSP-Key, and which
  Message-IDs were delivered more than once; `refused_attempts()`: every refusal served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import hashlib
import os
import re
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from fnmatch import fnmatchcase
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_OUTBOX = Path(".data/outbox")
DEFAULT_PORT = 1025
HOST = "127.0.0.1"
_KIND_RE = re.compile(r"^X-CSP-Kind:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _kind_of(content: bytes) -> str:
    headers = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _KIND_RE.search(headers.decode("ascii", "replace"))
    kind = re.sub(r"[^a-z0-9_-]+", "-", match.group(1).strip().lower()) if match else ""
    return kind.strip("-")[:40] or "message"


def write_eml(outbox: Path, content: bytes, received_at: datetime) -> Path:
    """Write one message atomically (tmp + rename), so readers never see half a file."""
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    digest = hashlib.sha256(content).hexdigest()[:10]
    path = outbox / f"{stamp}-{_kind_of(content)}-{digest}.eml"
    tmp = outbox / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    with tmp.open("wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Delivery:
    """One kept message, as the tests and the chaos benchmark count them."""

    path: Path
    message_id: str | None
    csp_key: str | None
    kind: str | None
    to: str
    subject: str


@dataclass(frozen=True)
class Refusal:
    """One refusal the sink served: at RCPT TO (`address` set) or at MAIL FROM (outage)."""

    address: str
    code: int
    at: datetime


def read_outbox(outbox: Path) -> list[tuple[Path, EmailMessage]]:
    """Every .eml in `outbox`, parsed, oldest first (names start with the UTC receive time)."""
    if not outbox.is_dir():
        return []
    messages: list[tuple[Path, EmailMessage]] = []
    for path in sorted(outbox.glob("*.eml")):
        # Stored with SMTP's CRLF line ends; parse with Python's, so bodies read naturally.
        data = path.read_bytes().replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append((path, parsed))
    return messages


class _Rules:
    """What the sink refuses right now; shared by the test thread and the server thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refusals: list[tuple[str, int, str]] = []  # (lowercase pattern, code, text)
        self.unavailable: tuple[int, str] | None = None
        self.served: list[Refusal] = []

    def for_recipient(self, address: str) -> tuple[int, str] | None:
        with self.lock:
            for pattern, code, text in self.refusals:
                if fnmatchcase(address.lower(), pattern):
                    self.served.append(Refusal(address, code, datetime.now(UTC)))
                    return code, text
            return None

    def for_sender(self, address: str) -> tuple[int, str] | None:
        with self.lock:
            if self.unavailable is not None:
                self.served.append(Refusal(address, self.unavailable[0], datetime.now(UTC)))
            return self.unavailable


class _OutboxHandler:
    def __init__(self, outbox: Path, rules: _Rules) -> None:
        self.outbox = outbox
        self.rules = rules

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (refused := self.rules.for_sender(address)) is not None:
            return f"{refused[0]} {refused[1]}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (refused := self.rules.for_recipient(address)) is not None:
            return f"{refused[0]} {refused[1]}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        # The envelope recipients (Bcc included) are otherwise lost; record them as an MTA
        # records delivery, in headers on top of the message.
        rcpt = ", ".join(envelope.rcpt_tos)
        trace = (
            f"X-Sink-Envelope-From: {envelope.mail_from}\r\nX-Sink-Envelope-To: {rcpt}\r\n"
        ).encode()
        await asyncio.to_thread(write_eml, self.outbox, trace + content, datetime.now(UTC))
        return "250 Message accepted for delivery"


class SmtpSink:
    """The sink on host:port writing into `outbox`. Use start()/stop() or `with SmtpSink(...)`."""

    def __init__(
        self,
        outbox: Path | str = DEFAULT_OUTBOX,
        port: int = DEFAULT_PORT,
        host: str = HOST,
        *,
        idle_timeout: float | None = None,
    ) -> None:
        """`idle_timeout`: seconds a client may stay silent before the sink answers 421 and
        hangs up, as mail servers do (aiosmtpd's default: 300)."""
        self.outbox = Path(outbox)
        self.host = host
        self.port = port or free_port(host)
        self.idle_timeout = idle_timeout
        self._controller: Controller | None = None
        self._rules = _Rules()

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        self.outbox.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _OutboxHandler(self.outbox, self._rules),
            hostname=self.host,
            port=self.port,
            # A fixed greeting name: the default looks up the FQDN, which can stall on DNS.
            server_hostname="smtp-sink.localhost",
            ready_timeout=10,
            # Forwarded to aiosmtpd's SMTP.
            **({} if self.idle_timeout is None else {"timeout": self.idle_timeout}),
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start() (same port)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @contextlib.contextmanager
    def outage(self) -> Iterator[SmtpSink]:
        """The mail server is down (connection refused) inside the block, back up after it."""
        self.stop()
        try:
            yield self
        finally:
            self.start()

    # -- refusals ----------------------------------------------------------------------------

    def refuse(self, pattern: str, code: int = 550, text: str | None = None) -> None:
        """Answer RCPT TO for recipients matching `pattern` (an address, or a glob such as
        `*@rechazado.mx`; case-insensitive) with `code` until accept_all()."""
        if not 400 <= code <= 599:
            raise ValueError(f"refuse: code must be a 4xx or 5xx SMTP reply, got {code}")
        default = "5.1.1 Mailbox unavailable" if code >= 500 else "4.2.1 Try again later"
        with self._rules.lock:
            self._rules.refusals.append((pattern.lower(), code, text or default))

    def unavailable(self, code: int = 421, text: str = "4.3.2 Service not available") -> None:
        """Answer every MAIL FROM with `code` (the server is up but not taking mail)."""
        with self._rules.lock:
            self._rules.unavailable = (code, text)

    def available(self) -> None:
        with self._rules.lock:
            self._rules.unavailable = None

    def accept_all(self) -> None:
        """Forget every refusal rule and unavailability: recovery."""
        with self._rules.lock:
            self._rules.refusals.clear()
            self._rules.unavailable = None

    def refused_attempts(self) -> list[Refusal]:
        with self._rules.lock:
            return list(self._rules.served)

    # -- what was kept -------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        """Every kept message with its Message-ID and X-CSP-Key, oldest first."""
        kept = []
        for path, message in self._read():
            message_id, key, kind = (
                message["Message-ID"],
                message["X-CSP-Key"],
                message["X-CSP-Kind"],
            )
            kept.append(
                Delivery(
                    path=path,
                    message_id=str(message_id).strip() if message_id else None,
                    csp_key=str(key) if key else None,
                    kind=str(kind) if kind else None,
                    to=str(message["X-Sink-Envelope-To"] or message["To"] or ""),
                    subject=str(message["Subject"] or ""),
                )
            )
        return kept

    def duplicates(self) -> dict[str, int]:
        """Message-IDs delivered more than once, with how many times."""
        counts = Counter(d.message_id for d in self.deliveries() if d.message_id)
        return {message_id: n for message_id, n in counts.items() if n > 1}

    def messages(self) -> list[EmailMessage]:
        """Every kept message, oldest first (file names start with the UTC receive time)."""
        return [message for _, message in self._read()]

    def _read(self) -> list[tuple[Path, EmailMessage]]:
        return read_outbox(self.outbox)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SmtpSink:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.to_thread(self.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.smtp_sink",
        description="Local SMTP sink: accepts every message and writes it as a .eml file.",
    )
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default {HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default 1025")
    parser.add_argument("--outbox", type=Path, default=DEFAULT_OUTBOX, help="default .data/outbox")
    parser.add_argument(
        "--refuse",
        action="append",
        # SMTP_SINK_REFUSE (comma-separated) reaches the sink `make run` starts.
        default=[p.strip() for p in os.environ.get("SMTP_SINK_REFUSE", "").split(",") if p.strip()],
        metavar="PATTERN",
        help="answer 550 to recipients matching this address or glob (repeatable; "
        "also $SMTP_SINK_REFUSE, comma-separated)",
    )
    args = parser.parse_args(argv)

    # Ctrl-C and SIGTERM both just ask the loop to end, so a signal that lands while the banner
    # is printed (or one inherited as ignored) cannot leave the sink half-stopped.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SmtpSink(args.outbox, port=args.port, host=args.host) as sink:
        for pattern in args.refuse:
            sink.refuse(pattern)
        print(
            f"SMTP sink listening on {sink.host}:{sink.port}, writing to {sink.outbox}/ "
            "(Ctrl-C to stop)",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    print("SMTP sink stopped", flush=True)


if __name__ == "__main__":
    main()
