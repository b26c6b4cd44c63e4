"""The pooled SMTP mailer over a real SMTP conversation with the local sink, and the MIME form
it writes, read back by the standard library's parser."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from csp_core.notifications.mailer import MailDeliveryError, SmtpMailer
from csp_core.notifications.messages import Email
from csp_core.notifications.mime import build_message, encode_text_header, message_id_for
from sandbox.smtp_sink import SmtpSink, free_port
from tests.test_notifications import ALL_BUILDERS, SENDER, invitation

REFUSED = "nadie@rechazado.mx"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "outbox", port=free_port()) as running:
        yield running


def notice(number: int, to: str = "compras@integradoranorte.mx") -> Email:
    return invitation(f"pool-{number}").model_copy(update={"to": [to]})


def keys(sink: SmtpSink) -> list[str]:
    return sorted(d.csp_key or "" for d in sink.deliveries())


async def test_sends_reuse_one_connection(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)
    for number in range(5):
        await mailer.send(notice(number))
    assert mailer.pool.opened == 1
    assert mailer.pool.idle == 1
    assert keys(sink) == [f"pool-{n}" for n in range(5)]
    await mailer.aclose()
    assert mailer.pool.idle == 0


async def test_concurrent_sends_share_a_bounded_pool(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10, max_connections=3)
    await asyncio.gather(*(mailer.send(notice(n)) for n in range(30)))
    assert keys(sink) == sorted(f"pool-{n}" for n in range(30))
    assert sink.duplicates() == {}
    assert mailer.pool.opened <= 3
    await mailer.aclose()


async def test_a_connection_the_server_dropped_while_idle_is_replaced(tmp_path: Path) -> None:
    # The sink hangs up (421) on clients silent for 0.3 s, as mail servers do after minutes.
    with SmtpSink(tmp_path / "outbox", port=free_port(), idle_timeout=0.3) as sink:
        mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10, idle_timeout=60)
        await mailer.send(notice(1))
        await asyncio.sleep(1.0)
        await mailer.send(notice(2))
        assert mailer.pool.opened == 2
        assert keys(sink) == ["pool-1", "pool-2"]
        await mailer.aclose()


async def test_a_dropped_connection_not_yet_noticed_is_replaced_without_failing(
    sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)
    await mailer.send(notice(1))
    [(smtp, _)] = mailer.pool._idle

    # The server's goodbye still in flight: the connection looks open, and its first command
    # meets the hang-up (what aiosmtplib raises then).
    async def hung_up(*args: object, **kwargs: object) -> None:
        smtp.close()
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")

    monkeypatch.setattr(smtp, "mail", hung_up)
    await mailer.send(notice(2))
    assert mailer.pool.opened == 2
    assert keys(sink) == ["pool-1", "pool-2"]
    await mailer.aclose()


async def test_a_reused_connection_answered_421_is_tried_once_on_a_new_one(
    sink: SmtpSink,
) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)
    await mailer.send(notice(1))
    sink.unavailable(421)  # "closing the channel": every MAIL FROM, old or new connection
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(notice(2))
    assert caught.value.retryable
    assert mailer.pool.opened == 2
    assert len(sink.refused_attempts()) == 2
    sink.available()
    await mailer.send(notice(3))
    assert keys(sink) == ["pool-1", "pool-3"]
    await mailer.aclose()


async def test_a_server_restart_between_sends_is_survived(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=5)
    await mailer.send(notice(1))
    sink.stop()
    sink.start()
    await mailer.send(notice(2))
    assert keys(sink) == ["pool-1", "pool-2"]
    await mailer.aclose()


async def test_idle_connections_are_closed_after_the_idle_timeout(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10, idle_timeout=0.2)
    await mailer.send(notice(1))
    [(smtp, _)] = mailer.pool._idle
    await asyncio.sleep(0.6)
    assert mailer.pool.idle == 0
    assert not smtp.is_connected
    await mailer.send(notice(2))
    assert mailer.pool.opened == 2
    await mailer.aclose()


async def test_a_permanent_refusal_is_not_retryable_and_the_connection_carries_on(
    sink: SmtpSink,
) -> None:
    sink.refuse(REFUSED, 550)
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)
    await mailer.send(notice(1))
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(notice(2, to=REFUSED))
    assert not caught.value.retryable
    assert "SMTPRecipientsRefused" in str(caught.value)
    await mailer.send(notice(3))  # RSET, then the same connection
    assert mailer.pool.opened == 1
    assert keys(sink) == ["pool-1", "pool-3"]
    await mailer.aclose()


async def test_a_transient_refusal_is_retryable(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)
    await mailer.send(notice(1))
    sink.refuse(REFUSED, 450)
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(notice(2, to=REFUSED))
    assert caught.value.retryable
    sink.unavailable(421)  # the server answers 421 to MAIL FROM on every connection
    with pytest.raises(MailDeliveryError) as unavailable:
        await mailer.send(notice(3))
    assert unavailable.value.retryable
    sink.accept_all()
    await mailer.send(notice(4))
    assert keys(sink) == ["pool-1", "pool-4"]
    await mailer.aclose()


async def test_an_outage_is_retryable_and_the_mailer_recovers(sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=5)
    await mailer.send(notice(1))
    with sink.outage():
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(notice(2))
        assert caught.value.retryable
        assert mailer.pool.idle == 0
    await mailer.send(notice(3))
    assert keys(sink) == ["pool-1", "pool-3"]
    await mailer.aclose()


async def test_a_full_pool_waits_at_most_the_timeout() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), SENDER, timeout=0.2, max_connections=1)
    await mailer.pool._slots.acquire()  # the only connection is busy
    mailer.pool._loop = asyncio.get_running_loop()
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(notice(1))
    assert caught.value.retryable
    assert "no SMTP connection free" in str(caught.value)


# --- the MIME form ---------------------------------------------------------------------------


def reference(mail: Email, sender: str) -> EmailMessage:
    """What the mailer built before (email.message.EmailMessage), for comparison."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(mail.to)
    if mail.cc:
        msg["Cc"] = ", ".join(mail.cc)
    msg["Subject"] = mail.subject
    msg["X-CSP-Kind"] = mail.kind
    msg["X-CSP-Key"] = mail.key
    msg.set_content(mail.text, charset="utf-8", cte="quoted-printable")
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("kind", sorted(ALL_BUILDERS))
def test_messages_read_as_the_email_package_built_them(kind: str, html: bool) -> None:
    mail = ALL_BUILDERS[kind](f"key-{kind}")
    if html:
        mail = mail.model_copy(update={"html": "<p>Fecha límite: <b>26 de diciembre</b></p>"})
    sender = "Licenciamiento Cómputo <licencias@marketplace.example.mx>"
    ours, theirs = parse(build_message(mail, sender)), reference(mail, sender)
    for name in ("From", "To", "Cc", "Subject", "X-CSP-Kind", "X-CSP-Key"):
        assert str(ours[name] or "") == str(theirs[name] or ""), name
    assert ours["Message-ID"] == message_id_for(mail.key, "marketplace.example.mx")
    assert ours["Date"] is not None
    assert ours.get_content_type() == theirs.get_content_type()
    for subtype in ("plain", "html"):
        mine, old = ours.get_body((subtype,)), theirs.get_body((subtype,))
        assert (mine is None) == (old is None)
        if mine is not None and old is not None:
            assert mine.get_content() == old.get_content()
            assert mine.get_content_charset() == "utf-8"
            assert mine["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize(
    "subject",
    [
        "Corto",
        "Renovación de diciembre",
        "Plain ASCII but long enough to need more than one line of a header " * 3,
        "Año nuevo 🎉 " * 12 + "ñ",
    ],
)
def test_subjects_round_trip_in_short_lines(subject: str) -> None:
    value = encode_text_header("Subject", subject.strip())
    assert all(len(line) <= 78 - len("Subject: ") for line in value.split("\r\n"))
    assert value.isascii()
    mail = invitation().model_copy(update={"subject": subject.strip()})
    assert parse(build_message(mail, SENDER))["Subject"] == subject.strip()


def test_headers_refuse_line_breaks() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        build_message(invitation().model_copy(update={"key": "a\r\nBcc: x@y.mx"}), SENDER)
    with pytest.raises(ValueError, match="line breaks"):
        build_message(invitation().model_copy(update={"to": ["a@b.mx\nBcc: x@y.mx"]}), SENDER)


def test_a_body_line_starting_with_the_boundary_marker_cannot_end_a_part() -> None:
    mail = invitation().model_copy(update={"text": "--=_csp_x\n.\nFin\n", "html": "<p>.</p>"})
    parsed = parse(build_message(mail, SENDER))
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content() == "--=_csp_x\n.\nFin\n"
