"""A local SMTP sink: accepts every message and keeps it as a .eml file in an outbox folder.

It is a real SMTP server (aiosmtpd), so the mailer is exercised over a real SMTP conversation,
and what "was sent" can be opened in any mail client or read back by tests.

    python -m sandbox.smtp_sink --port 1025 --outbox .data/outbox
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import hashlib
import os
import re
import signal
import socket
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
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


class _OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

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
        self, outbox: Path | str = DEFAULT_OUTBOX, port: int = DEFAULT_PORT, host: str = HOST
    ) -> None:
        self.outbox = Path(outbox)
        self.host = host
        self.port = port or free_port(host)
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        self.outbox.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _OutboxHandler(self.outbox),
            hostname=self.host,
            port=self.port,
            # A fixed greeting name: the default looks up the FQDN, which can stall on DNS.
            server_hostname="smtp-sink.localhost",
            ready_timeout=10,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[EmailMessage]:
        """Every kept message, oldest first (file names start with the UTC receive time)."""
        if not self.outbox.is_dir():
            return []
        messages: list[EmailMessage] = []
        for path in sorted(self.outbox.glob("*.eml")):
            # Stored with SMTP's CRLF line ends; parse with Python's, so bodies read naturally.
            data = path.read_bytes().replace(b"\r\n", b"\n")
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            messages.append(parsed)
        return messages

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
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SmtpSink(args.outbox, port=args.port, host=args.host) as sink:
        print(
            f"SMTP sink listening on {sink.host}:{sink.port}, writing to {sink.outbox}/ "
            "(Ctrl-C to stop)",
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print("SMTP sink stopped", flush=True)


if __name__ == "__main__":
    main()
