"""The renewal side's e-mails: notice, reminders, escalation, cutoff, suspension, payment."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from csp_core.calendar import (
    format_date_es,
    format_datetime_es,
    format_mxn,
    format_period_es,
    parse_period,
)
from csp_core.notifications.messages.wording import (
    AwareDatetime,
    Email,
    EmailKind,
    body,
    bullets,
    cutoff_phrase,
    greeting,
    last_day_before,
    licenses,
    ordinal,
)
from csp_core.timezones import BUSINESS_TZ


class RenewalDetails(BaseModel):
    """What every renewal e-mail shows about one subscription and billing period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: str
    product_name: str
    quantity: int
    company_name: str
    domain: str
    reseller_name: str
    reseller_email: str
    billing_period: str = Field(description="YYYY-MM")
    amount: Decimal = Field(description="MXN due for the period")
    cutoff: AwareDatetime = Field(description="Payment due before this instant (day 26 00:00)")
    order_id: str | None = None
    amount_paid: Decimal = Field(default=Decimal(0), description="MXN paid so far (partial)")

    @property
    def amount_due(self) -> Decimal:
        return max(self.amount - self.amount_paid, Decimal(0))

    @field_validator("billing_period")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)
        return value


def _renewal_summary(r: RenewalDetails, tz: ZoneInfo, *, with_due: bool = True) -> str:
    lines = [
        f"Cliente: {r.company_name}",
        f"Dominio Microsoft: {r.domain}",
        f"Suscripción: {r.product_name} ({licenses(r.quantity)}), ID {r.subscription_id}",
        f"Periodo de facturación: {format_period_es(r.billing_period)}",
        f"Monto: {format_mxn(r.amount)}",
    ]
    if r.amount_paid > 0:
        lines.append(f"Pagado hasta ahora: {format_mxn(r.amount_paid)}")
        lines.append(f"Saldo pendiente: {format_mxn(r.amount_due)}")
    if r.order_id:
        lines.insert(0, f"Pedido original: {r.order_id}")
    if with_due:
        lines.append(f"Fecha límite de pago: {cutoff_phrase(r.cutoff, tz)}")
    return "\n".join(lines)


def _renewal_subject(prefix: str, r: RenewalDetails) -> str:
    return (
        f"{prefix} | Renovación de {format_period_es(r.billing_period)}: {r.product_name}, "
        f"{r.company_name} ({r.domain})"
    )


# --- renewal side ----------------------------------------------------------------------------


def renewal_notice(renewal: RenewalDetails, *, key: str, tz: ZoneInfo = BUSINESS_TZ) -> Email:
    """The billing period opened: amount and cutoff."""
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"Se abrió el periodo de facturación de {format_period_es(r.billing_period)} de la "
        f"suscripción {r.product_name} de {r.company_name}. El monto a pagar es "
        f"{format_mxn(r.amount)} y debe pagarse {cutoff_phrase(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Si el pago no se recibe a tiempo, la suscripción puede suspenderse y los usuarios de "
        "su cliente perderían el acceso.",
        "Recuerde: reducir licencias o cancelar con reembolso proporcional solo es posible "
        "dentro de los 7 días (168 horas) posteriores a la renovación.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_NOTICE.value,
        to=[r.reseller_email],
        subject=_renewal_subject(f"Pago pendiente de {format_mxn(r.amount)}", r),
        text=text,
    )


def renewal_reminder(
    renewal: RenewalDetails, reminder_number: int, *, key: str, tz: ZoneInfo = BUSINESS_TZ
) -> Email:
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"Le recordamos que el pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name} "
        f"sigue pendiente. Debe pagarse {cutoff_phrase(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Si ya realizó el pago, gracias: puede ignorar este mensaje; en cuanto se registre "
        "le enviaremos la confirmación.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_REMINDER.value,
        to=[r.reseller_email],
        subject=_renewal_subject(f"Recordatorio {ordinal(reminder_number)} de pago", r),
        text=text,
    )


def renewal_escalation(
    renewal: RenewalDetails, ops_email: str, *, key: str, tz: ZoneInfo = BUSINESS_TZ
) -> Email:
    """Close to the cutoff and still unpaid: ops is copied to follow up personally."""
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"El pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name} "
        f"sigue pendiente y la fecha límite está cerca: debe pagarse "
        f"{cutoff_phrase(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Copiamos a nuestro equipo de operaciones para darle seguimiento. Si hay algún "
        "problema con el pago, responda a este correo y le ayudaremos a resolverlo antes de "
        "la fecha límite.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_ESCALATION.value,
        to=[r.reseller_email],
        cc=[ops_email],
        subject=_renewal_subject("Urgente: pago pendiente", r),
        text=text,
    )


def renewal_final_notice(
    renewal: RenewalDetails,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    ops_email: str | None = None,
) -> Email:
    """The last day to pay."""
    r = renewal
    last_day = format_date_es(last_day_before(r.cutoff, tz).date())
    text = body(
        greeting(r.reseller_name),
        f"El {last_day} es el último día para pagar {format_mxn(r.amount)} de la renovación "
        f"de {format_period_es(r.billing_period)} de {r.product_name} para {r.company_name}. "
        f"El pago debe registrarse antes del {format_datetime_es(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Si el pago no llega a tiempo, la suscripción puede suspenderse y los usuarios de su "
        "cliente perderían el acceso. Si ya pagó, gracias: puede ignorar este mensaje.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_FINAL_NOTICE.value,
        to=[r.reseller_email],
        cc=[ops_email] if ops_email else [],
        subject=_renewal_subject(f"Último día para pagar ({last_day})", r),
        text=text,
    )


def renewal_at_risk(
    renewal: RenewalDetails,
    ops_email: str,
    policy: str,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """Unpaid at the cutoff; says which policy applies ('notify' or 'suspend')."""
    r = renewal
    policy = str(policy)
    if policy == "suspend":
        consequence = (
            "Política aplicable: suspensión. La suscripción se suspenderá por falta de pago y "
            "los usuarios de su cliente perderán el acceso hasta que se reciba el pago. "
            "Al registrarse el pago, la suscripción se reactiva."
        )
    elif policy == "notify":
        consequence = (
            "Política aplicable: solo aviso. Por ahora la suscripción sigue activa, pero el "
            "adeudo queda registrado y nuestro equipo de operaciones le contactará para "
            "regularizarlo."
        )
    else:
        raise ValueError(f"unknown cutoff policy {policy!r} (expected 'notify' or 'suspend')")
    text = body(
        greeting(r.reseller_name),
        f"La fecha límite de pago era el {format_datetime_es(r.cutoff, tz)}, y no hemos "
        f"recibido el pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name}.",
        consequence,
        _renewal_summary(r, tz, with_due=False),
        "Para regularizarlo, realice el pago lo antes posible y responda a este correo con el "
        "comprobante.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_AT_RISK.value,
        to=[ops_email, r.reseller_email],
        subject=_renewal_subject("Pago vencido", r),
        text=text,
    )


def renewal_suspended(
    renewal: RenewalDetails,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    ops_email: str | None = None,
) -> Email:
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"Suspendimos la suscripción {r.product_name} de {r.company_name} ({r.domain}) por "
        f"falta de pago de la renovación de {format_period_es(r.billing_period)}.",
        "Qué significa:\n"
        + bullets(
            [
                "Los usuarios de su cliente perdieron el acceso a los servicios de esta "
                "suscripción.",
                "Microsoft sigue facturando la suscripción mientras está suspendida, por lo "
                f"que el adeudo de {format_mxn(r.amount)} se mantiene.",
                "La renovación automática quedó desactivada.",
                "Si la suscripción sigue suspendida al terminar su plazo, Microsoft la "
                "deshabilita y después elimina los datos.",
            ]
        ),
        f"Para reactivarla, realice el pago de {format_mxn(r.amount)}. En cuanto lo "
        "registremos, reactivaremos la suscripción y le avisaremos.",
        _renewal_summary(r, tz, with_due=False),
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_SUSPENDED.value,
        to=[r.reseller_email],
        cc=[ops_email] if ops_email else [],
        subject=_renewal_subject("Suscripción suspendida por falta de pago", r),
        text=text,
    )


def renewal_reactivated(renewal: RenewalDetails, *, key: str, tz: ZoneInfo = BUSINESS_TZ) -> Email:
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"Recibimos el pago y reactivamos la suscripción {r.product_name} de "
        f"{r.company_name} ({r.domain}). Sus usuarios ya tienen acceso de nuevo.",
        "Importante: la renovación automática se desactivó durante la suspensión. Si desea "
        "que la suscripción se renueve automáticamente al final de su plazo, responda a este "
        "correo y la volvemos a activar.",
        _renewal_summary(r, tz, with_due=False),
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_REACTIVATED.value,
        to=[r.reseller_email],
        subject=_renewal_subject("Suscripción reactivada", r),
        text=text,
    )


def payment_received(
    renewal: RenewalDetails,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    paid_at: datetime | None = None,
) -> Email:
    r = renewal
    when = f" el {format_datetime_es(paid_at, tz)}" if paid_at is not None else ""
    text = body(
        greeting(r.reseller_name),
        f"Gracias. Registramos{when} el pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name}. "
        "No tiene que hacer nada más: la suscripción continúa activa.",
        _renewal_summary(r, tz, with_due=False),
    )
    return Email(
        key=key,
        kind=EmailKind.PAYMENT_RECEIVED.value,
        to=[r.reseller_email],
        subject=_renewal_subject("Pago recibido", r),
        text=text,
    )


def renewal_partial_payment(
    renewal: RenewalDetails, paid_now: Decimal, *, key: str, tz: ZoneInfo = BUSINESS_TZ
) -> Email:
    """A payment that does not cover the charge: thanks, and what is still due by when."""
    r = renewal
    text = body(
        greeting(r.reseller_name),
        f"Registramos un pago de {format_mxn(paid_now)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name}. "
        f"El monto de la renovación es {format_mxn(r.amount)}: llevamos recibidos "
        f"{format_mxn(r.amount_paid)} y quedan {format_mxn(r.amount_due)} por pagar, "
        f"{cutoff_phrase(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Mientras quede saldo pendiente, el pago se considera incompleto y los recordatorios "
        "continúan. En cuanto se complete le enviaremos la confirmación.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_PARTIAL_PAYMENT.value,
        to=[r.reseller_email],
        subject=_renewal_subject(f"Pago parcial recibido; saldo de {format_mxn(r.amount_due)}", r),
        text=text,
    )


def renewal_reactivation_failed(
    renewal: RenewalDetails,
    ops_email: str,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    retry_every: timedelta | None = None,
) -> Email:
    """To ops: the customer paid, but the provider has not reactivated the subscription.
    `retry_every` None: the automatic retries stopped, reactivation must be done by hand."""
    r = renewal
    if retry_every is not None:
        hours = int(retry_every.total_seconds() // 3600)
        follow_up = (
            f"Seguimos intentándolo automáticamente cada {hours} horas y le avisaremos al "
            "reactivarla. Revise el estado de la suscripción con el proveedor."
        )
        subject = "Acción requerida: la reactivación falló"
    else:
        follow_up = (
            "Dejamos de intentarlo automáticamente: reactive la suscripción manualmente con el "
            "proveedor lo antes posible."
        )
        subject = "Acción requerida: reactivación manual pendiente"
    text = body(
        "Equipo de operaciones:",
        f"{r.reseller_name} pagó la renovación de {format_period_es(r.billing_period)} de "
        f"{r.product_name} para {r.company_name} ({r.domain}), pero el proveedor no ha "
        "reactivado la suscripción: los usuarios del cliente siguen sin acceso.",
        follow_up,
        _renewal_summary(r, tz, with_due=False),
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_REACTIVATION_FAILED.value,
        to=[ops_email],
        subject=_renewal_subject(subject, r),
        text=text,
    )


def renewal_suspension_failed(
    renewal: RenewalDetails, ops_email: str, *, key: str, tz: ZoneInfo = BUSINESS_TZ
) -> Email:
    """To ops: unpaid at the cutoff under the suspension policy, but the provider refused."""
    r = renewal
    text = body(
        "Equipo de operaciones:",
        f"La renovación de {format_period_es(r.billing_period)} de {r.product_name} para "
        f"{r.company_name} ({r.domain}) no se pagó a tiempo y la política es suspender, pero "
        "el proveedor no suspendió la suscripción: sigue activa.",
        "Decida si la suspende manualmente con el proveedor. Si el pago llega, no hace falta "
        "reactivarla.",
        _renewal_summary(r, tz, with_due=False),
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_SUSPENSION_FAILED.value,
        to=[ops_email],
        subject=_renewal_subject("Acción requerida: la suspensión falló", r),
        text=text,
    )
