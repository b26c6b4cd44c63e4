"""Notifications: es-MX content, the SMTP mailer over a real SMTP conversation, the SMTP sink."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope
from pydantic import SecretStr, ValidationError
from temporalio.exceptions import ApplicationError

from activities.common import LEDGER_UNAVAILABLE, MAIL_UNAVAILABLE, NOTICE_UNDELIVERABLE, send_once
from csp_core.calendar import format_date_es, format_datetime_es, format_mxn, format_period_es
from csp_core.notifications import (
    Email,
    EmailKind,
    MailDeliveryError,
    RecordingMailer,
    RenewalDetails,
    SmtpMailer,
    acceptance_expired,
    acceptance_reminder,
    message_id_for,
    order_active,
    order_cancelled,
    order_failed,
    partner_invitation,
    payment_received,
    renewal_at_risk,
    renewal_escalation,
    renewal_final_notice,
    renewal_notice,
    renewal_reactivated,
    renewal_reminder,
    renewal_suspended,
)
from csp_core.notifications.messages import (
    TermDetails,
    renewal_partial_payment,
    renewal_reactivation_failed,
    renewal_suspension_failed,
    subscription_cancelled,
    subscription_expired,
    subscription_expiring,
    subscription_renewed,
)
from csp_core.orders.failures import FailureCode, OrderFailure
from csp_core.registry import (
    NotificationRecord,
    NotificationStatus,
    Registry,
    make_engine,
    migrate,
)
from csp_core.settings import Settings
from sandbox.smtp_sink import SmtpSink, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SENDER = "Marketplace Microsoft <licencias@marketplace.example.mx>"
SENDER_DOMAIN = "marketplace.example.mx"
OPS = "operaciones@marketplace.example.mx"
RESELLER = "Integradora Norte SA de CV"
RESELLER_EMAIL = "compras@integradoranorte.mx"
COMPANY = "Contoso México SA de CV"
ORDER_ID = "ABS-2026-000123"
RELATIONSHIP_URL = (
    "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
    "&partnerId=00000000-0000-0000-0000-00000000a5e0&msppId=0&DAP=false"
    "#/BillingAccounts/partner-invitation"
)
# 2026-12-26 00:00 in Mexico City (UTC-6 all year).
CUTOFF = datetime(2026, 12, 26, 6, 0, tzinfo=UTC)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "outbox", port=free_port()) as running:
        yield running


@pytest.fixture
def mailer(sink: SmtpSink) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", sink.port, SENDER, timeout=10)


def invitation(key: str = "order-ABS-2026-000123:partner_invitation") -> Email:
    return partner_invitation(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "fabrikam.onmicrosoft.com",
        RELATIONSHIP_URL,
        CUTOFF,
        key=key,
    )


def renewal(**overrides: object) -> RenewalDetails:
    values: dict[str, object] = {
        "subscription_id": "a1b2c3d4-0000-4000-8000-000000000001",
        "product_name": "Microsoft 365 Business Basic",
        "quantity": 10,
        "company_name": COMPANY,
        "domain": "contosomx.onmicrosoft.com",
        "reseller_name": RESELLER,
        "reseller_email": RESELLER_EMAIL,
        "billing_period": "2026-12",
        "amount": Decimal("1290"),
        "cutoff": CUTOFF,
        "order_id": ORDER_ID,
    }
    values.update(overrides)
    return RenewalDetails.model_validate(values)


LINES = [("Microsoft 365 Business Basic", 10, "P1Y", "monthly")]

# A P1Y term bought 2026-11-02 17:30 UTC: last day 2027-11-01 (Partner Center's date).
TERM = TermDetails(
    subscription_id="a1b2c3d4-0000-4000-8000-000000000001",
    product_name="Microsoft 365 Business Basic",
    seats=10,
    company_name=COMPANY,
    domain="contosomx.onmicrosoft.com",
    reseller_name=RESELLER,
    reseller_email=RESELLER_EMAIL,
    term="P1Y",
    billing_cycle="monthly",
    term_started_at=datetime(2026, 11, 2, 17, 30, tzinfo=UTC),
    term_ends_at=datetime(2027, 11, 1, tzinfo=UTC),
    order_id=ORDER_ID,
)

ALL_BUILDERS: dict[str, Callable[[str], Email]] = {
    "partner_invitation": invitation,
    "acceptance_reminder": lambda key: acceptance_reminder(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "fabrikam.onmicrosoft.com",
        RELATIONSHIP_URL,
        2,
        CUTOFF,
        key=key,
    ),
    "acceptance_expired": lambda key: acceptance_expired(
        ORDER_ID, RESELLER, RESELLER_EMAIL, COMPANY, "fabrikam.onmicrosoft.com", CUTOFF, key=key
    ),
    "order_active": lambda key: order_active(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "contosomx.onmicrosoft.com",
        LINES,
        True,
        key=key,
    ),
    "order_cancelled": lambda key: order_cancelled(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "contosomx.onmicrosoft.com",
        "cancelado por el distribuidor a petición del cliente",
        key=key,
    ),
    "order_failed": lambda key: order_failed(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "contosomx.onmicrosoft.com",
        OrderFailure(
            code=FailureCode.PROVIDER_REJECTED,
            detail="creating tenant contosomx.onmicrosoft.com: provider answered 400 (2000)",
            provider_code="2000",
        ),
        ops_email=OPS,
        key=key,
    ),
    "renewal_notice": lambda key: renewal_notice(renewal(), key=key),
    "renewal_reminder": lambda key: renewal_reminder(renewal(), 1, key=key),
    "renewal_escalation": lambda key: renewal_escalation(renewal(), OPS, key=key),
    "renewal_final_notice": lambda key: renewal_final_notice(renewal(), key=key),
    "renewal_at_risk": lambda key: renewal_at_risk(renewal(), OPS, "notify", key=key),
    "renewal_suspended": lambda key: renewal_suspended(renewal(), key=key),
    "renewal_reactivated": lambda key: renewal_reactivated(renewal(), key=key),
    "payment_received": lambda key: payment_received(renewal(), key=key),
    "renewal_partial_payment": lambda key: renewal_partial_payment(
        renewal(amount_paid=Decimal("500")), Decimal("500"), key=key
    ),
    "renewal_reactivation_failed": lambda key: renewal_reactivation_failed(
        renewal(), OPS, key=key, retry_every=timedelta(hours=6)
    ),
    "renewal_suspension_failed": lambda key: renewal_suspension_failed(renewal(), OPS, key=key),
    "subscription_cancelled": lambda key: subscription_cancelled(
        key=key,
        subscription_id="SUB-1",
        reseller_name=RESELLER,
        reseller_email=RESELLER_EMAIL,
        company_name=COMPANY,
        domain="contosomx.onmicrosoft.com",
        product_name="Microsoft 365 Business Basic",
        seats=10,
        cancelled_at=CUTOFF,
    ),
    "subscription_renewed": lambda key: subscription_renewed(TERM, key=key),
    "subscription_expiring": lambda key: subscription_expiring(TERM, 30, key=key),
    "subscription_expired": lambda key: subscription_expired(TERM, key=key),
}


def test_subscription_cancelled_says_when_in_mexico_city_time_and_that_no_renewal_follows() -> None:
    email = ALL_BUILDERS["subscription_cancelled"]("k")
    assert email.to == [RESELLER_EMAIL]
    assert "26 de diciembre de 2026, 00:00 h (hora del centro de México)" in email.text
    assert "10 licencias" in email.text and "contosomx.onmicrosoft.com" in email.text
    assert "ningún cargo de renovación" in email.text


# --- calendar formatting -------------------------------------------------------------------


def test_dates_and_amounts_read_as_in_mexico() -> None:
    mx = ZoneInfo("America/Mexico_City")
    assert format_datetime_es(datetime(2026, 12, 25, 15, 0, tzinfo=UTC), mx) == (
        "25 de diciembre de 2026, 09:00 h (hora del centro de México)"
    )
    # Mexico City has no DST since 2022: July is UTC-6 too.
    assert format_datetime_es(datetime(2026, 7, 1, 6, 0, tzinfo=UTC), mx).startswith(
        "1 de julio de 2026, 00:00 h"
    )
    assert format_date_es(date(2027, 1, 5)) == "5 de enero de 2027"
    assert format_period_es("2026-12") == "diciembre de 2026"
    assert format_period_es("2027-09") == "septiembre de 2027"
    assert format_mxn(Decimal("1290")) == "$1,290.00 MXN"
    assert format_mxn(Decimal("1234567.895")) == "$1,234,567.90 MXN"
    assert format_mxn(Decimal("0")) == "$0.00 MXN"
    assert format_mxn(Decimal("-129.5")) == "-$129.50 MXN"


def test_formatting_refuses_ambiguous_input() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_datetime_es(datetime(2026, 12, 26, 0, 0), ZoneInfo("America/Mexico_City"))
    with pytest.raises(ValueError, match="YYYY-MM"):
        format_period_es("2026-13")
    with pytest.raises(ValueError, match="YYYY-MM"):
        renewal(billing_period="12/2026")
    with pytest.raises(ValidationError, match="timezone-aware"):
        renewal(cutoff=datetime(2026, 12, 26))


# --- content a reseller reads ----------------------------------------------------------------


def test_invitation_has_link_domain_and_deadline_in_mexico_city_time() -> None:
    email = invitation()
    assert email.kind == "partner_invitation"
    assert email.to == [RESELLER_EMAIL]
    assert RELATIONSHIP_URL in email.text
    assert "fabrikam.onmicrosoft.com" in email.text
    assert "26 de diciembre de 2026, 00:00 h (hora del centro de México)" in email.text
    assert "Ingram Micro" in email.text
    assert "administrador global" in email.text
    assert "otro proveedor" in email.text  # why the acceptance is needed
    assert "continúa por sí sola" in email.text
    assert ORDER_ID in email.subject


def test_acceptance_reminder_and_expiry() -> None:
    reminder = ALL_BUILDERS["acceptance_reminder"]("k")
    assert RELATIONSHIP_URL in reminder.text
    assert "Recordatorio 2.º" in reminder.subject
    assert "26 de diciembre de 2026, 00:00 h" in reminder.text
    expired = ALL_BUILDERS["acceptance_expired"]("k")
    assert "ningún cargo" in expired.text
    assert "pedido nuevo" in expired.text


def test_order_active_for_created_tenant_points_to_credentials_reveal_without_password() -> None:
    email = order_active(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        COMPANY,
        "contosomx.onmicrosoft.com",
        LINES,
        tenant_created=True,
        key="order-ABS-2026-000123:order_active",
        purchased_at=datetime(2026, 12, 1, 18, 0, tzinfo=UTC),
    )
    assert f"csp credentials reveal {ORDER_ID}" in email.text
    assert not re.search(r"(contraseña|password)\s*[:=]", email.text, re.IGNORECASE)
    assert "Microsoft 365 Business Basic: 10 licencias, plazo de 1 año, facturación mensual" in (
        email.text
    )
    # New Commerce reminders.
    assert "en cualquier momento" in email.text
    assert "7 días (168 horas)" in email.text
    assert "no pueden transferirse a otro dominio" in email.text
    assert "8 de diciembre de 2026, 12:00 h" in email.text  # purchase + 168 h, local time


def test_order_active_for_linked_tenant_has_no_credentials_step() -> None:
    email = order_active(
        ORDER_ID, RESELLER, RESELLER_EMAIL, COMPANY, "fabrikam.onmicrosoft.com", LINES, False,
        key="k",
    )  # fmt: skip
    assert "credentials reveal" not in email.text
    assert "admin.microsoft.com" in email.text


def test_cancelled_and_failed_orders() -> None:
    cancelled = ALL_BUILDERS["order_cancelled"]("k")
    assert "a petición del cliente" in cancelled.text
    assert "ningún cargo" in cancelled.text
    assert cancelled.cc == []
    failed = ALL_BUILDERS["order_failed"]("k")
    assert "Motivo: el proveedor de licencias rechazó" in failed.text
    assert "código de error: 2000" in failed.text
    assert "provider answered" not in failed.text  # the ops detail stays with ops
    assert failed.to == [RESELLER_EMAIL]
    assert failed.cc == [OPS]


@pytest.mark.parametrize(
    "kind",
    [
        "renewal_notice",
        "renewal_reminder",
        "renewal_escalation",
        "renewal_final_notice",
        "renewal_at_risk",
        "renewal_suspended",
        "renewal_reactivated",
        "payment_received",
    ],
)
def test_renewal_messages_show_amount_period_and_subscription(kind: str) -> None:
    email = ALL_BUILDERS[kind]("k")
    assert "$1,290.00 MXN" in email.text
    assert "diciembre de 2026" in email.text
    assert "Microsoft 365 Business Basic" in email.text
    assert "contosomx.onmicrosoft.com" in email.text


@pytest.mark.parametrize(
    "kind", ["renewal_notice", "renewal_reminder", "renewal_escalation", "renewal_final_notice"]
)
def test_renewal_due_wording_uses_the_cutoff_day(kind: str) -> None:
    email = ALL_BUILDERS[kind]("k")
    assert "antes del día 26 de diciembre de 2026" in email.text or (
        "antes del 26 de diciembre de 2026, 00:00 h" in email.text
    )
    assert "25 de diciembre de 2026" in email.text  # the last day to pay


def test_cutoff_day_follows_the_setting() -> None:
    # PAYMENT_CUTOFF_DAY=20: the cutoff instant is 20 Dec 00:00 local.
    email = renewal_notice(renewal(cutoff=datetime(2026, 12, 20, 6, tzinfo=UTC)), key="k")
    assert "antes del día 20 de diciembre de 2026" in email.text
    assert "19 de diciembre de 2026" in email.text


def test_escalation_copies_ops_and_final_notice_names_the_last_day() -> None:
    escalation = renewal_escalation(renewal(), OPS, key="k")
    assert escalation.to == [RESELLER_EMAIL]
    assert escalation.cc == [OPS]
    final = renewal_final_notice(renewal(), key="k")
    assert "El 25 de diciembre de 2026 es el último día" in final.text


def test_at_risk_goes_to_ops_and_reseller_and_names_the_policy() -> None:
    notify = renewal_at_risk(renewal(), OPS, "notify", key="k")
    assert set(notify.to) == {OPS, RESELLER_EMAIL}
    assert "solo aviso" in notify.text
    suspend = renewal_at_risk(renewal(), OPS, "suspend", key="k")
    assert "suspensión" in suspend.text and "suspenderá" in suspend.text
    with pytest.raises(ValueError, match="cutoff policy"):
        renewal_at_risk(renewal(), OPS, "ignore", key="k")


def test_suspension_explains_billing_auto_renew_and_reactivation() -> None:
    email = renewal_suspended(renewal(), key="k")
    assert "Microsoft sigue facturando" in email.text
    assert "renovación automática quedó desactivada" in email.text
    assert "Para reactivarla, realice el pago de $1,290.00 MXN" in email.text


def test_builders_are_deterministic_and_keys_come_from_the_caller() -> None:
    for build in ALL_BUILDERS.values():
        assert build("the-key") == build("the-key")
        assert build("the-key").key == "the-key"
    kinds = {build("k").kind for build in ALL_BUILDERS.values()}
    assert kinds == {kind.value for kind in EmailKind}


def test_subjects_never_carry_line_breaks() -> None:
    email = order_cancelled(
        ORDER_ID, RESELLER, RESELLER_EMAIL, "Contoso\r\nBcc: victim@example.com", "x", "r",
        key="k",
    )  # fmt: skip
    assert "\n" not in email.subject and "\r" not in email.subject


# --- the SMTP conversation -------------------------------------------------------------------


async def test_smtp_mailer_delivers_utf8_spanish_with_deterministic_message_id(
    sink: SmtpSink, mailer: SmtpMailer
) -> None:
    email = invitation()
    await mailer.send(email)

    [received] = sink.messages()
    assert received["Subject"] == email.subject
    assert "México" in received["Subject"]
    assert received["From"] == SENDER
    assert received["To"] == RESELLER_EMAIL
    assert received["X-CSP-Kind"] == "partner_invitation"
    assert received["X-CSP-Key"] == email.key
    assert received["Message-ID"] == message_id_for(email.key, SENDER_DOMAIN)
    assert received["Date"]
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    body = received.get_content()
    assert body == email.text
    assert "¿Por qué?" in body and "Reenvíe" in body
    assert RELATIONSHIP_URL in body


async def test_resending_a_key_keeps_the_message_id(sink: SmtpSink, mailer: SmtpMailer) -> None:
    await mailer.send(invitation("same-key"))
    await mailer.send(invitation("same-key"))
    await mailer.send(invitation("other-key"))

    ids = [m["Message-ID"] for m in sink.messages()]
    assert len(ids) == 3  # the sink keeps duplicates; downstream dedups on Message-ID
    assert ids[0] == ids[1] != ids[2]


async def test_cc_recipients_receive_the_message(sink: SmtpSink, mailer: SmtpMailer) -> None:
    await mailer.send(renewal_escalation(renewal(), OPS, key="renewal-sub-1-2026-12:escalation"))

    [received] = sink.messages()
    assert received["Cc"] == OPS
    assert set(received["X-Sink-Envelope-To"].split(", ")) == {RESELLER_EMAIL, OPS}
    assert "$1,290.00 MXN" in received.get_content()


async def test_html_alternative_is_sent_alongside_the_text(
    sink: SmtpSink, mailer: SmtpMailer
) -> None:
    text = invitation()
    email = text.model_copy(update={"html": "<p>Fecha límite: <b>26 de diciembre</b></p>"})
    await mailer.send(email)

    [received] = sink.messages()
    assert received.get_content_type() == "multipart/alternative"
    assert received.get_body(("plain",)).get_content() == text.text
    assert "límite" in received.get_body(("html",)).get_content()


async def test_every_message_goes_through_smtp(sink: SmtpSink, mailer: SmtpMailer) -> None:
    for kind, build in ALL_BUILDERS.items():
        await mailer.send(build(f"key-{kind}"))
    received = sink.messages()
    assert sorted(m["X-CSP-Kind"] for m in received) == sorted(ALL_BUILDERS)
    for message in received:
        assert message.get_content().rstrip().endswith("Equipo de Licenciamiento Microsoft")


async def test_closed_port_raises_a_clear_retryable_error_without_secrets() -> None:
    port = free_port()
    mailer = SmtpMailer(
        "127.0.0.1", port, SENDER, username="relay", password=SecretStr("s3cr3t-pw"), timeout=5
    )
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(invitation())
    error = caught.value
    assert error.retryable
    assert f"127.0.0.1:{port}" in str(error)
    assert "partner_invitation" in str(error)
    assert "s3cr3t-pw" not in str(error) and "s3cr3t-pw" not in repr(error)
    assert error.__cause__ is None
    assert "s3cr3t-pw" not in repr(mailer)


async def test_auth_against_a_server_without_auth_is_not_retryable(sink: SmtpSink) -> None:
    mailer = SmtpMailer(
        "127.0.0.1", sink.port, SENDER, username="relay", password=SecretStr("s3cr3t-pw")
    )
    with pytest.raises(MailDeliveryError, match="AUTH") as caught:
        await mailer.send(invitation())
    assert not caught.value.retryable
    assert "s3cr3t-pw" not in str(caught.value)
    assert sink.messages() == []


def test_mailer_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        smtp_host="mail.example.mx",
        smtp_port=2525,
        smtp_username="relay",
        smtp_password=SecretStr("pw"),
        smtp_starttls=True,
    )
    mailer = SmtpMailer.from_settings(settings)
    assert (mailer.host, mailer.port, mailer.sender) == (
        "mail.example.mx",
        2525,
        settings.mail_from,
    )
    assert mailer.username == "relay" and mailer.starttls


async def test_recording_mailer_keeps_what_was_sent() -> None:
    mailer = RecordingMailer()
    await mailer.send(invitation())
    await mailer.send(renewal_notice(renewal(), key="k"))
    assert mailer.kinds() == ["partner_invitation", "renewal_notice"]
    assert mailer.of_kind("renewal_notice")[0].key == "k"


# --- the sink itself -------------------------------------------------------------------------


async def test_sink_writes_named_eml_files_atomically(sink: SmtpSink, mailer: SmtpMailer) -> None:
    await mailer.send(invitation())
    await mailer.send(renewal_notice(renewal(), key="renewal:notice"))

    names = sorted(p.name for p in sink.outbox.iterdir())
    assert len(names) == 2, names  # no temporary files left behind
    assert re.fullmatch(r"\d{8}T\d{12}-partner_invitation-[0-9a-f]{10}\.eml", names[0])
    assert re.fullmatch(r"\d{8}T\d{12}-renewal_notice-[0-9a-f]{10}\.eml", names[1])
    assert [m["X-CSP-Kind"] for m in sink.messages()] == ["partner_invitation", "renewal_notice"]


async def test_sink_runs_from_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    outbox = tmp_path / "cli-outbox"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "sandbox.smtp_sink", "--port", str(port), "--outbox", str(outbox)],
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert f"listening on 127.0.0.1:{port}" in banner, banner
        await SmtpMailer("127.0.0.1", port, SENDER, timeout=10).send(invitation())
        proc.send_signal(signal.SIGINT)
        output = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
        returncode = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert returncode == 0, output
    assert "stopped" in output
    [eml] = list(outbox.glob("*.eml"))
    assert "partner_invitation" in eml.name


def test_sink_port_is_reusable_after_stop(tmp_path: Path) -> None:
    port = free_port()
    for _ in range(2):
        started = time.monotonic()
        with SmtpSink(tmp_path, port=port) as sink:
            assert sink.port == port
        assert time.monotonic() - started < 10
    assert SmtpSink(tmp_path / "missing").messages() == []


# --- the order failure e-mail: Spanish, per failure code, never contradicting itself --------

# Words of the English reasons workflows used to pass through (and of an ops detail).
ENGLISH = re.compile(
    r"\b(the|choose|provider|order|please|failed|taken|another|submit|prefix|retry|tenant)\b",
    re.IGNORECASE,
)
OPS_DETAIL = "ops-only detail: provider answered 400 for request 1f0e"
NOT_AGAIN = "no vuelva a enviar el pedido"


def failed_email(code: FailureCode, company: str = COMPANY, **params: str) -> Email:
    return order_failed(
        ORDER_ID,
        RESELLER,
        RESELLER_EMAIL,
        company,
        "contosomx.onmicrosoft.com",
        OrderFailure(code=code, detail=OPS_DETAIL, **params),
        ops_email=OPS,
        key=f"order-{ORDER_ID}:failed",
    )


@pytest.mark.parametrize("code", list(FailureCode))
def test_each_failure_reads_in_spanish_without_the_ops_detail(code: FailureCode) -> None:
    email = failed_email(code, provider_code="2000")
    motivo = re.search(r"^Motivo: (.+)$", email.text, re.MULTILINE)
    assert motivo is not None and len(motivo.group(1)) > 40, email.text
    assert not ENGLISH.search(email.text), ENGLISH.findall(email.text)
    assert not ENGLISH.search(email.subject)
    assert OPS_DETAIL not in email.text and "1f0e" not in email.text
    assert email.text.rstrip().endswith("Equipo de Licenciamiento Microsoft")


@pytest.mark.parametrize("code", list(FailureCode))
def test_the_next_step_matches_the_reason(code: FailureCode) -> None:
    email = failed_email(code)
    if code in (FailureCode.DOMAIN_TAKEN, FailureCode.ORDER_CONFLICT):
        # The reseller fixes it by sending a new order: never told not to resubmit.
        assert NOT_AGAIN not in email.text
        assert "número de pedido nuevo" in email.text
        assert email.cc == []  # nothing for ops to do
    else:
        assert NOT_AGAIN in email.text
        assert "operaciones" in email.text
        assert email.cc == [OPS]
    nothing_charged = "ni se realizó ningún cargo" in email.text
    known_before_ordering = {
        FailureCode.DOMAIN_TAKEN,
        FailureCode.ORDER_CONFLICT,
        FailureCode.TENANT_CONFLICT,
    }
    assert nothing_charged == (code in known_before_ordering)


def test_domain_taken_offers_another_prefix_or_link_mode() -> None:
    email = failed_email(FailureCode.DOMAIN_TAKEN, domain="contosomx.onmicrosoft.com")
    assert "el dominio contosomx.onmicrosoft.com ya está en uso" in email.text
    assert "otro prefijo" in email.text
    assert 'modo vincular (modo "link")' in email.text
    assert "envíe un pedido nuevo" in email.text


def test_provider_code_is_shown_only_when_given() -> None:
    assert (
        "código de error: 2000"
        in failed_email(FailureCode.PROVIDER_REJECTED, provider_code="2000").text
    )
    assert "código de error" not in failed_email(FailureCode.PROVIDER_REJECTED).text


def test_a_legacy_english_reason_is_read_not_shown() -> None:
    # A FAILED notice recorded before failure codes existed, retried by a newer worker.
    reason = (
        "the domain contosomx.onmicrosoft.com is already taken; choose another prefix, or "
        "submit the order in link mode if the tenant belongs to this client"
    )
    failure = OrderFailure.from_reason(reason, domain="contosomx.onmicrosoft.com")
    email = order_failed(
        ORDER_ID, RESELLER, RESELLER_EMAIL, COMPANY, "contosomx.onmicrosoft.com", failure,
        ops_email=OPS, key="k",
    )  # fmt: skip
    assert email.text == failed_email(FailureCode.DOMAIN_TAKEN).text
    assert not ENGLISH.search(email.text)


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("the domain x is already taken; choose another prefix", FailureCode.DOMAIN_TAKEN),
        ("creating tenant x: provider answered 400 (2000): bad address", "provider_rejected"),
        ("the provider failed to provision subscription s-1", "provisioning_failed"),
        ("order ABS-1 is already recorded with different content; ...", "order_conflict"),
        (
            "domain x is already bound to tenant id t-1; refusing to bind it to t-2",
            "tenant_conflict",
        ),
        ("something nobody expected", "internal"),
    ],
)
def test_legacy_reasons_map_to_codes(reason: str, code: str) -> None:
    assert OrderFailure.from_reason(reason).code == code


def test_activity_error_types_map_to_codes() -> None:
    def code(error_type: str | None) -> FailureCode:
        return OrderFailure.from_error(error_type, "detail").code

    assert code("ProviderRejected") is FailureCode.PROVIDER_REJECTED
    assert code("ProvisioningFailed") is FailureCode.PROVISIONING_FAILED
    assert code("TenantConflict") is FailureCode.TENANT_CONFLICT
    assert code("OrderConflict") is FailureCode.ORDER_CONFLICT
    assert code("ProviderUnavailable") is FailureCode.INTERNAL  # retries ran out
    assert code(None) is FailureCode.INTERNAL


def test_markup_from_input_never_reaches_a_subject() -> None:
    email = failed_email(FailureCode.INTERNAL, company="<script>alert(1)</script> SA")
    assert "<" not in email.subject and ">" not in email.subject
    assert "‹script›alert(1)‹/script› SA" in email.subject  # still readable
    assert email.html is None  # plain text only: the body is never rendered as markup


# --- the e-mail ledger with real SMTP: at least once, never twice once sent -----------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """A migrated registry on SQLite, and on PostgreSQL (own schema) when TEST_DATABASE_URL."""
    if request.param == "sqlite":
        registry = Registry.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
        yield registry
        registry.dispose()
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is unset: PostgreSQL ledger tests skipped")
    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    migrate.upgrade(engine)
    try:
        yield Registry(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def unreachable_registry() -> Registry:
    """A registry whose database is down: nothing listens on its port."""
    return Registry(make_engine(f"postgresql://csp@127.0.0.1:{free_port()}/csp", pool_size=1))


class AnsweringServer:
    """A real SMTP server (aiosmtpd) answering RCPT and/or DATA with the given replies, and
    optionally refusing every AUTH; counts the RCPT commands it saw."""

    def __init__(
        self,
        rcpt: Callable[[str], str] | None = None,
        data: str | None = None,
        refuse_auth: bool = False,
    ) -> None:
        self._rcpt, self._data = rcpt, data
        self.rcpt_seen = 0
        options: dict[str, object] = {}
        if refuse_auth:
            options = {
                "auth_require_tls": False,
                "authenticator": lambda *_: AuthResult(success=False, handled=False),
            }
        self.port = free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="answering.localhost",
            ready_timeout=10,
            **options,
        )

    async def handle_RCPT(
        self, server: object, session: object, envelope: Envelope, address: str, options: object
    ) -> str:
        self.rcpt_seen += 1
        reply = self._rcpt(address) if self._rcpt else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        return self._data or "250 Message accepted"

    def __enter__(self) -> AnsweringServer:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()


def notice(key: str = "order-ABS-2026-000123:invitation") -> Email:
    return invitation(key)


def sender_domain_id(key: str) -> str:
    return message_id_for(key, SENDER_DOMAIN)


async def test_a_claim_left_by_a_dead_worker_is_delivered_exactly_once(
    ledger: Registry, sink: SmtpSink, mailer: SmtpMailer
) -> None:
    email = notice()
    # The first attempt claimed the notice, then its worker died before sending.
    await asyncio.to_thread(
        ledger.begin_notification_attempt, email.key, email.kind, RESELLER_EMAIL, ORDER_ID
    )
    assert await send_once(ledger, mailer, email, order_id=ORDER_ID)  # the retry sends it
    assert not await send_once(ledger, mailer, email, order_id=ORDER_ID)

    [received] = sink.messages()
    assert received["Message-ID"] == sender_domain_id(email.key)
    row = ledger.get_notification(email.key)
    assert row is not None
    assert (row.status, row.attempts, row.order_id) == (NotificationStatus.SENT, 2, ORDER_ID)


async def test_a_notice_retried_after_success_is_not_sent_again(
    ledger: Registry, sink: SmtpSink, mailer: SmtpMailer
) -> None:
    email = notice()
    assert await send_once(ledger, mailer, email, order_id=ORDER_ID)
    # The activity's result was lost (worker died after sending): Temporal runs it again.
    for _ in range(3):
        assert not await send_once(ledger, mailer, email, order_id=ORDER_ID)
    assert len(sink.messages()) == 1
    row = ledger.get_notification(email.key)
    assert row is not None and row.status is NotificationStatus.SENT and row.attempts == 1


async def test_a_permanent_refusal_is_undeliverable_and_never_retried(ledger: Registry) -> None:
    email = notice()
    with AnsweringServer(
        rcpt=lambda _: "550 5.1.1 <compras@integradoranorte.mx>: no such user"
    ) as smtp:
        mailer = SmtpMailer("127.0.0.1", smtp.port, SENDER, timeout=10)
        with pytest.raises(ApplicationError) as caught:
            await send_once(ledger, mailer, email, order_id=ORDER_ID)
        assert caught.value.type == NOTICE_UNDELIVERABLE and caught.value.non_retryable
        assert "550" in caught.value.message
        row = ledger.get_notification(email.key)
        assert row is not None and row.status is NotificationStatus.UNDELIVERABLE
        assert row.undeliverable_reason is not None and "550" in row.undeliverable_reason
        assert row.undeliverable_at is not None and row.sent_at is None

        # A later attempt (a retry, a replayed workflow) does not knock on the server again.
        with pytest.raises(ApplicationError) as again:
            await send_once(ledger, mailer, email, order_id=ORDER_ID)
        assert again.value.type == NOTICE_UNDELIVERABLE and again.value.non_retryable
        assert smtp.rcpt_seen == 1
    [listed] = ledger.list_notifications(status=NotificationStatus.UNDELIVERABLE)
    assert listed.key == email.key


async def test_an_smtp_outage_keeps_the_notice_pending_then_delivers_it_once(
    ledger: Registry, tmp_path: Path
) -> None:
    email = notice()
    port = free_port()  # nothing listens there yet: the mail server is down
    mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=5)
    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as caught:
            await send_once(ledger, mailer, email, order_id=ORDER_ID)
        assert caught.value.type == MAIL_UNAVAILABLE and not caught.value.non_retryable
        row = ledger.get_notification(email.key)
        assert row is not None and row.status is NotificationStatus.PENDING
        assert row.attempts == attempt and row.last_error and "SMTPConnectError" in row.last_error
    assert [n.key for n in ledger.list_notifications(status="pending")] == [email.key]

    with SmtpSink(tmp_path / "outbox", port=port) as sink:  # the mail server is back
        assert await send_once(ledger, mailer, email, order_id=ORDER_ID)
        assert not await send_once(ledger, mailer, email, order_id=ORDER_ID)
        [received] = sink.messages()
    assert received["Message-ID"] == sender_domain_id(email.key)
    assert received["X-CSP-Key"] == email.key
    row = ledger.get_notification(email.key)
    assert row is not None and row.status is NotificationStatus.SENT and row.attempts == 3


async def test_a_database_outage_never_loses_the_notice(
    ledger: Registry, sink: SmtpSink, mailer: SmtpMailer
) -> None:
    email = notice()
    down = unreachable_registry()
    try:
        # Down while claiming: nothing is sent, the retry can.
        with pytest.raises(ApplicationError) as caught:
            await send_once(down, mailer, email, order_id=ORDER_ID)
        assert caught.value.type == LEDGER_UNAVAILABLE and not caught.value.non_retryable
        assert sink.messages() == []

        # Down right after sending: the row stays pending, so the retry sends it again, with
        # the same Message-ID (a recognisable duplicate rather than a lost notice).
        class DownAfterSending(Registry):
            def mark_notification_sent(self, key: str) -> NotificationRecord:
                return down.mark_notification_sent(key)

        flaky = DownAfterSending(ledger.engine)
        with pytest.raises(ApplicationError) as caught:
            await send_once(flaky, mailer, email, order_id=ORDER_ID)
        assert caught.value.type == LEDGER_UNAVAILABLE and not caught.value.non_retryable
        row = ledger.get_notification(email.key)
        assert row is not None and row.status is NotificationStatus.PENDING
    finally:
        down.dispose()

    assert await send_once(ledger, mailer, email, order_id=ORDER_ID)
    assert not await send_once(ledger, mailer, email, order_id=ORDER_ID)
    ids = [m["Message-ID"] for m in sink.messages()]
    assert ids == [sender_domain_id(email.key)] * 2


# --- which SMTP failures a retry can fix (real SMTP conversations) ---------------------------


async def _delivery_error(
    server: AnsweringServer, email: Email, **mailer_options: object
) -> MailDeliveryError:
    mailer = SmtpMailer("127.0.0.1", server.port, SENDER, timeout=5, **mailer_options)  # type: ignore[arg-type]
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(email)
    return caught.value


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        ("550 5.1.1 no such user", False),
        ("553 5.1.3 bad address syntax", False),
        ("554 5.7.1 relay access denied", False),
        ("450 4.2.1 mailbox busy", True),
        ("451 4.3.0 try again later", True),
        ("452 4.2.2 mailbox full", True),
        ("421 4.3.2 shutting down", True),
    ],
)
async def test_recipient_refusals_are_permanent_only_for_5xx(reply: str, retryable: bool) -> None:
    with AnsweringServer(rcpt=lambda _: reply) as smtp:
        error = await _delivery_error(smtp, notice())
    assert error.retryable is retryable
    assert reply[:3] in str(error)


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("554 5.6.0 message refused", False), ("552 5.3.4 too big", False),
     ("451 4.7.1 greylisted", True), ("421 4.4.2 timeout", True)],
)  # fmt: skip
async def test_data_refusals_are_permanent_only_for_5xx(reply: str, retryable: bool) -> None:
    with AnsweringServer(data=reply) as smtp:
        error = await _delivery_error(smtp, notice())
    assert error.retryable is retryable


async def test_some_recipients_refused_for_now_is_retryable() -> None:
    # The reseller's server refuses for good, ops' server only for now: a retry can reach ops.
    def reply(address: str) -> str:
        return "550 5.1.1 no such user" if address == RESELLER_EMAIL else "451 4.3.0 later"

    with AnsweringServer(rcpt=reply) as smtp:
        error = await _delivery_error(smtp, renewal_escalation(renewal(), OPS, key="k"))
    assert error.retryable


async def test_every_recipient_refused_for_good_is_permanent() -> None:
    with AnsweringServer(rcpt=lambda _: "550 5.1.1 no such user") as smtp:
        error = await _delivery_error(smtp, renewal_escalation(renewal(), OPS, key="k"))
    assert not error.retryable


async def test_bad_credentials_are_permanent_and_never_echoed() -> None:
    with AnsweringServer(refuse_auth=True) as smtp:
        error = await _delivery_error(
            smtp, notice(), username="relay", password=SecretStr("s3cr3t-pw")
        )
        assert smtp.rcpt_seen == 0
    assert not error.retryable
    assert "535" in str(error)
    assert "s3cr3t-pw" not in str(error)


async def test_a_server_that_never_answers_times_out_retryably() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=1)
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(notice())
    finally:
        silent.close()
    assert caught.value.retryable
    assert "Timeout" in str(caught.value)
