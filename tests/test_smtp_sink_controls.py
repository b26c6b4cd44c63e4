"""The SMTP sink misbehaving on purpose, over real SMTP: refusals, outages, recovery, and
counting deliveries by Message-ID."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from sandbox.smtp_sink import SmtpSink


def message(to: str, message_id: str = "<k1@marketplace.example.mx>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "licencias@marketplace.example.mx"
    msg["To"] = to
    msg["Subject"] = "Aviso"
    msg["Message-ID"] = message_id
    msg["X-CSP-Kind"] = "order_activated"
    msg["X-CSP-Key"] = "order-activated:ABS-1"
    msg.set_content("Hola")
    return msg


def send(sink: SmtpSink, msg: EmailMessage) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.send_message(msg)


def test_refused_recipient_gets_the_permanent_code_until_recovery(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("*@rechazado.mx")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_sink, message("compras@RECHAZADO.mx"))
    assert refused.value.recipients["compras@RECHAZADO.mx"][0] == 550
    send(smtp_sink, message("otro@aceptado.mx", "<k2@marketplace.example.mx>"))
    assert [r.code for r in smtp_sink.refused_attempts()] == [550]

    smtp_sink.accept_all()
    send(smtp_sink, message("compras@rechazado.mx"))
    assert [d.to for d in smtp_sink.deliveries()] == ["otro@aceptado.mx", "compras@rechazado.mx"]


def test_transient_refusal_code(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("ana@cliente.mx", code=450)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_sink, message("ana@cliente.mx"))
    assert refused.value.recipients["ana@cliente.mx"][0] == 450
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_sink.refuse("x@y.mx", code=250)


def test_outage_refuses_connections_then_recovers_on_the_same_port(smtp_sink: SmtpSink) -> None:
    port = smtp_sink.port
    with smtp_sink.outage():
        assert not smtp_sink.running
        with pytest.raises(ConnectionRefusedError):
            send(smtp_sink, message("ana@cliente.mx"))
    assert smtp_sink.port == port and smtp_sink.running
    send(smtp_sink, message("ana@cliente.mx"))
    assert len(smtp_sink.deliveries()) == 1


def test_unavailable_answers_421_to_every_sender(smtp_sink: SmtpSink) -> None:
    smtp_sink.unavailable()
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(smtp_sink, message("ana@cliente.mx"))
    assert refused.value.smtp_code == 421
    smtp_sink.available()
    send(smtp_sink, message("ana@cliente.mx"))
    assert len(smtp_sink.deliveries()) == 1


def test_deliveries_carry_message_id_and_key_and_duplicates_are_counted(
    smtp_sink: SmtpSink,
) -> None:
    send(smtp_sink, message("ana@cliente.mx", "<a@m.mx>"))
    send(smtp_sink, message("ana@cliente.mx", "<a@m.mx>"))
    send(smtp_sink, message("ana@cliente.mx", "<b@m.mx>"))

    kept = smtp_sink.deliveries()
    assert [d.message_id for d in kept] == ["<a@m.mx>", "<a@m.mx>", "<b@m.mx>"]
    assert {d.csp_key for d in kept} == {"order-activated:ABS-1"}
    assert {d.kind for d in kept} == {"order_activated"}
    assert smtp_sink.duplicates() == {"<a@m.mx>": 2}


def test_stop_and_start_keep_the_outbox(tmp_path: Path) -> None:
    sink = SmtpSink(outbox=tmp_path / "outbox", port=0).start()
    try:
        send(sink, message("ana@cliente.mx"))
        sink.stop()
        sink.start()
        send(sink, message("ana@cliente.mx", "<k2@m.mx>"))
        assert len(sink.messages()) == 2
    finally:
        sink.stop()
