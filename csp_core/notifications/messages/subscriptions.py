"""A subscription's e-mails: cancelled, renewed at term end, expiring, expired."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from csp_core.calendar import (
    format_datetime_es,
    format_period_es,
)
from csp_core.notifications.messages.wording import (
    CYCLES,
    TERMS,
    AwareDatetime,
    Email,
    EmailKind,
    aware,
    body,
    greeting,
    licenses,
    one_line,
)
from csp_core.subscriptions.terms import term_end_instant
from csp_core.subscriptions.windows import change_window_end
from csp_core.timezones import BUSINESS_TZ

# --- subscription side -----------------------------------------------------------------------


def subscription_cancelled(
    *,
    key: str,
    subscription_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    product_name: str,
    seats: int,
    cancelled_at: datetime,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """Cancelled inside its 168-hour window: Microsoft refunds pro rata, no renewal follows."""
    parts = [
        greeting(reseller_name),
        f"La suscripción {subscription_id} de {product_name} ({licenses(seats)}) para "
        f"{company_name} en el dominio {domain} fue cancelada el "
        f"{format_datetime_es(aware(cancelled_at), tz)}.",
        "La cancelación se hizo dentro de los 7 días (168 horas) posteriores a la compra o a la "
        "renovación, por lo que Microsoft la acepta con reembolso proporcional y no se generará "
        "ningún cargo de renovación posterior.",
        "Las licencias dejan de estar disponibles para los usuarios de su cliente. Si necesita "
        "licencias de nuevo, envíe un pedido nuevo para ese dominio.",
    ]
    return Email(
        key=key,
        kind=EmailKind.SUBSCRIPTION_CANCELLED.value,
        to=[reseller_email],
        subject=one_line(f"Suscripción cancelada: {product_name}, {company_name} ({domain})"),
        text=body(*parts),
    )


# --- a subscription's terms ------------------------------------------------------------------


class TermDetails(BaseModel):
    """What every e-mail about a subscription's term shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: str
    product_name: str
    seats: int
    company_name: str
    domain: str
    reseller_name: str
    reseller_email: str
    term: str = Field(description="P1M | P1Y | P3Y")
    billing_cycle: str = Field(description="monthly | annual")
    term_started_at: AwareDatetime
    term_ends_at: AwareDatetime = Field(description="The term's last day (commitmentEndDate)")
    order_id: str | None = None

    @property
    def ends_at(self) -> datetime:
        """The instant the term is over (the anniversary, 00:00 UTC)."""
        return term_end_instant(self.term_ends_at)


def _term_summary(t: TermDetails, tz: ZoneInfo) -> str:
    lines = [
        f"Cliente: {t.company_name}",
        f"Dominio Microsoft: {t.domain}",
        f"Suscripción: {t.product_name} ({licenses(t.seats)}), ID {t.subscription_id}",
        f"Duración: {TERMS.get(t.term, t.term)}, {CYCLES.get(t.billing_cycle, t.billing_cycle)}",
        f"Vigencia: del {format_datetime_es(t.term_started_at, tz)} al "
        f"{format_datetime_es(t.ends_at, tz)}",
    ]
    if t.order_id:
        lines.insert(0, f"Pedido original: {t.order_id}")
    return "\n".join(lines)


def _term_subject(prefix: str, t: TermDetails) -> str:
    return f"{prefix}: {t.product_name}, {t.company_name} ({t.domain})"


def _after_expiry() -> str:
    return (
        "Al vencer, Microsoft marca la suscripción como expirada: sus usuarios conservan el "
        "acceso durante 30 días, sin facturación, y una suscripción expirada ya no puede "
        "reactivarse. Después queda deshabilitada 90 días (solo los administradores acceden a "
        "los datos) y luego Microsoft la elimina junto con sus datos."
    )


def subscription_renewed(term: TermDetails, *, key: str, tz: ZoneInfo = BUSINESS_TZ) -> Email:
    """Renewed at the anniversary (auto-renew on): the new term, and its 168-hour window."""
    t = term
    window_end = change_window_end(t.term_started_at)
    text = body(
        greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({licenses(t.seats)}) para "
        f"{t.company_name} en el dominio {t.domain} se renovó automáticamente por otro "
        f"{TERMS.get(t.term, t.term)}. El nuevo plazo comenzó el "
        f"{format_datetime_es(t.term_started_at, tz)} y termina el "
        f"{format_datetime_es(t.ends_at, tz)}.",
        "Durante los 7 días (168 horas) posteriores a la renovación, hasta el "
        f"{format_datetime_es(window_end, tz)}, puede reducir licencias o cancelar la "
        "suscripción con reembolso proporcional. Después de ese momento se factura el plazo "
        "completo. Agregar licencias es posible en cualquier momento.",
        "Si su cliente ya no necesita estas licencias, o necesita menos, avísenos antes de esa "
        "fecha respondiendo a este correo.",
        _term_summary(t, tz),
    )
    return Email(
        key=key,
        kind=EmailKind.SUBSCRIPTION_RENEWED.value,
        to=[t.reseller_email],
        subject=one_line(_term_subject("Suscripción renovada", t)),
        text=text,
    )


def subscription_expiring(
    term: TermDetails,
    days_before: int,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    suspended_for: str | None = None,
) -> Email:
    """Auto-renew is off: the term ends in `days_before` days and will not renew."""
    t = term
    if suspended_for:
        period = format_period_es(suspended_for)
        keep = (
            f"La suscripción además está suspendida por falta de pago de la renovación de "
            f"{period}, y una suscripción suspendida no se renueva. Si su cliente desea "
            f"conservarla, realice ese pago; en cuanto la reactivemos, pídanos activar la "
            "renovación automática antes de que venza, respondiendo a este correo."
        )
    else:
        keep = (
            "Si su cliente desea conservarla, pídanos activar la renovación automática antes "
            "de esa fecha respondiendo a este correo: se renovará por otro "
            f"{TERMS.get(t.term, t.term)} al terminar el plazo actual."
        )
    text = body(
        greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({licenses(t.seats)}) para "
        f"{t.company_name} en el dominio {t.domain} vence el "
        f"{format_datetime_es(t.ends_at, tz)} y no se renovará, porque su renovación "
        "automática está desactivada.",
        _after_expiry(),
        keep,
        _term_summary(t, tz),
    )
    return Email(
        key=key,
        kind=EmailKind.SUBSCRIPTION_EXPIRING.value,
        to=[t.reseller_email],
        subject=one_line(_term_subject(f"Su suscripción vence en {days_before} días", t)),
        text=text,
    )


def subscription_expired(
    term: TermDetails,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    suspended_for: str | None = None,
) -> Email:
    """The term ended without renewing (auto-renew off, or suspended for non-payment)."""
    t = term
    why = (
        f"porque estaba suspendida por falta de pago de la renovación de "
        f"{format_period_es(suspended_for)}"
        if suspended_for
        else "porque su renovación automática estaba desactivada"
    )
    text = body(
        greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({licenses(t.seats)}) para "
        f"{t.company_name} en el dominio {t.domain} venció el "
        f"{format_datetime_es(t.ends_at, tz)} sin renovarse, {why}.",
        "No se generarán nuevos cargos de renovación por esta suscripción."
        + (
            f" El pago pendiente de la renovación de {format_period_es(suspended_for)} se mantiene."
            if suspended_for
            else ""
        ),
        _after_expiry() + " Respalde a tiempo la información que su cliente necesite.",
        f"Si su cliente necesita las licencias de nuevo, envíe un pedido nuevo para el dominio "
        f"{t.domain}.",
        _term_summary(t, tz),
    )
    return Email(
        key=key,
        kind=EmailKind.SUBSCRIPTION_EXPIRED.value,
        to=[t.reseller_email],
        subject=one_line(_term_subject("Suscripción vencida", t)),
        text=text,
    )
