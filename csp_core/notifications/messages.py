"""The e-mails the product sends, in Spanish (es-MX), built by pure functions.

No I/O and no clock: every instant comes in as an aware datetime and is shown in the business
time zone, and every idempotency key comes from the caller, so a workflow can build the same
e-mail twice (on replay or retry) and get the same e-mail. Messages go to the reseller, who
forwards what concerns the client; ops is copied where a person has to act.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from csp_core.calendar import (
    MONTHS_ES,
    format_date_es,
    format_datetime_es,
    format_mxn,
    format_period_es,
    parse_period,
)
from csp_core.orders.failures import FailureCode, OrderFailure
from csp_core.subscriptions.terms import term_end_instant
from csp_core.subscriptions.windows import change_window_end
from csp_core.timezones import BUSINESS_TZ

ADMIN_CENTER_URL = "https://admin.microsoft.com"
SIGNATURE = "Atentamente,\nEquipo de Licenciamiento Microsoft"


class EmailKind(StrEnum):
    PARTNER_INVITATION = "partner_invitation"
    ACCEPTANCE_REMINDER = "acceptance_reminder"
    ACCEPTANCE_EXPIRED = "acceptance_expired"
    ORDER_ACTIVE = "order_active"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FAILED = "order_failed"
    RENEWAL_NOTICE = "renewal_notice"
    RENEWAL_REMINDER = "renewal_reminder"
    RENEWAL_ESCALATION = "renewal_escalation"
    RENEWAL_FINAL_NOTICE = "renewal_final_notice"
    RENEWAL_AT_RISK = "renewal_at_risk"
    RENEWAL_SUSPENDED = "renewal_suspended"
    RENEWAL_REACTIVATED = "renewal_reactivated"
    PAYMENT_RECEIVED = "payment_received"
    RENEWAL_PARTIAL_PAYMENT = "renewal_partial_payment"
    RENEWAL_REACTIVATION_FAILED = "renewal_reactivation_failed"
    RENEWAL_SUSPENSION_FAILED = "renewal_suspension_failed"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    SUBSCRIPTION_EXPIRING = "subscription_expiring"
    SUBSCRIPTION_EXPIRED = "subscription_expired"


# Angle brackets from input (a company name, say) become look-alike quotation marks in
# subjects: some clients render a subject as markup, and a subject is never meant to hold any.
_NO_MARKUP = str.maketrans({"<": "‹", ">": "›"})


def _one_line(value: str) -> str:
    # Header values must not carry line breaks (header injection, and EmailMessage refuses them).
    return re.sub(r"\s+", " ", value).strip().translate(_NO_MARKUP)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Email(BaseModel):
    """One e-mail ready to send; `key` makes re-sends recognisable (it drives the Message-ID)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=200)]
    kind: str
    to: Annotated[list[str], Field(min_length=1)]
    cc: list[str] = []
    subject: Annotated[str, AfterValidator(_one_line), Field(min_length=1)]
    text: str
    html: str | None = None

    @field_validator("key", "kind")
    @classmethod
    def _no_line_breaks(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be a single line")
        return value


class OrderLine(NamedTuple):
    """One activated line; plain tuples (product_name, quantity, term, billing_cycle) work too."""

    product_name: str
    quantity: int
    term: str
    billing_cycle: str


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


# --- wording helpers -------------------------------------------------------------------------

_TERMS = {"P1M": "plazo de 1 mes", "P1Y": "plazo de 1 año", "P3Y": "plazo de 3 años"}
_CYCLES = {"monthly": "facturación mensual", "annual": "facturación anual"}


def _licenses(quantity: int) -> str:
    return "1 licencia" if quantity == 1 else f"{quantity:,} licencias"


def _greeting(reseller_name: str) -> str:
    return f"Estimado equipo de {reseller_name}:"


def _body(*parts: str) -> str:
    """Paragraphs separated by a blank line, then the signature."""
    return "\n\n".join(part.strip("\n") for part in (*parts, SIGNATURE) if part) + "\n"


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _ordinal(n: int) -> str:
    return f"{n}.º" if n > 0 else str(n)


def _last_day_before(cutoff: datetime, tz: ZoneInfo) -> datetime:
    return cutoff.astimezone(tz) - timedelta(microseconds=1)


def _cutoff_phrase(cutoff: datetime, tz: ZoneInfo) -> str:
    """'antes del día 26 de diciembre de 2026 (a más tardar el 25 de diciembre de 2026)'."""
    local = _aware(cutoff).astimezone(tz)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        last = _last_day_before(cutoff, tz).date()
        return (
            f"antes del día {local.day} de {MONTHS_ES[local.month - 1]} de {local.year} "
            f"(a más tardar el {format_date_es(last)})"
        )
    return f"antes del {format_datetime_es(cutoff, tz)}"


def _order_summary(order_id: str, company_name: str, domain: str) -> str:
    return f"Pedido: {order_id}\nCliente: {company_name}\nDominio Microsoft: {domain}"


def _renewal_summary(r: RenewalDetails, tz: ZoneInfo, *, with_due: bool = True) -> str:
    lines = [
        f"Cliente: {r.company_name}",
        f"Dominio Microsoft: {r.domain}",
        f"Suscripción: {r.product_name} ({_licenses(r.quantity)}), ID {r.subscription_id}",
        f"Periodo de facturación: {format_period_es(r.billing_period)}",
        f"Monto: {format_mxn(r.amount)}",
    ]
    if r.amount_paid > 0:
        lines.append(f"Pagado hasta ahora: {format_mxn(r.amount_paid)}")
        lines.append(f"Saldo pendiente: {format_mxn(r.amount_due)}")
    if r.order_id:
        lines.insert(0, f"Pedido original: {r.order_id}")
    if with_due:
        lines.append(f"Fecha límite de pago: {_cutoff_phrase(r.cutoff, tz)}")
    return "\n".join(lines)


def _renewal_subject(prefix: str, r: RenewalDetails) -> str:
    return (
        f"{prefix} | Renovación de {format_period_es(r.billing_period)}: {r.product_name}, "
        f"{r.company_name} ({r.domain})"
    )


def _nce_rules(domain: str) -> str:
    return "Reglas de Microsoft (New Commerce) que conviene tener presentes:\n" + _bullets(
        [
            "Puede agregar licencias en cualquier momento; el cargo adicional es proporcional.",
            "Reducir licencias o cancelar la suscripción con reembolso proporcional solo es "
            "posible dentro de los 7 días (168 horas) posteriores a la compra o a la renovación. "
            "Después de ese plazo se factura el plazo completo.",
            f"Las licencias quedan ligadas al dominio {domain} y no pueden transferirse a otro "
            "dominio (tenant). Para usar otro dominio es necesario comprar una suscripción nueva "
            "en él.",
        ]
    )


# --- order side ------------------------------------------------------------------------------


def partner_invitation(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    relationship_url: str,
    deadline: datetime,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """Ask the reseller to forward the partner invitation to the client's Global Admin."""
    due = format_datetime_es(deadline, tz)
    text = _body(
        _greeting(reseller_name),
        f"Recibimos el pedido {order_id} de licencias Microsoft para {company_name}, en el "
        f"dominio {domain}. Para activarlo necesitamos un paso de su cliente.",
        "¿Por qué? Este dominio (tenant de Microsoft) ya se utilizó antes con otro proveedor. "
        "Microsoft solo nos permite colocar pedidos en él cuando un administrador global del "
        "dominio acepta a nuestro marketplace y a su distribuidor, Ingram Micro, como partners "
        "de Microsoft de su organización. Aceptar esta relación no nos da acceso a los datos, "
        "usuarios ni buzones del cliente.",
        "Qué hacer:\n"
        "1. Reenvíe este correo a su cliente.\n"
        f"2. Un administrador global de {domain} debe abrir el siguiente enlace, iniciar "
        "sesión con su cuenta de administrador y aceptar la invitación:\n"
        f"   {relationship_url}\n"
        "3. Listo. No necesita avisarnos: detectamos la aceptación y la activación continúa "
        "por sí sola. Le escribiremos cuando las licencias estén activas.",
        f"Fecha límite para aceptar: {due}. Si la invitación no se acepta antes, cerraremos el "
        "pedido sin ningún cargo.",
        "Mientras tanto no se ha colocado ningún pedido con Microsoft ni se ha realizado "
        "ningún cargo.",
        _order_summary(order_id, company_name, domain),
    )
    return Email(
        key=key,
        kind=EmailKind.PARTNER_INVITATION.value,
        to=[reseller_email],
        subject=(
            f"Acción requerida: {company_name} debe aceptarnos como partner de Microsoft "
            f"(pedido {order_id})"
        ),
        text=text,
    )


def acceptance_reminder(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    relationship_url: str,
    reminder_number: int,
    deadline: datetime,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """The client has not accepted yet: resend the link with the deadline."""
    due = format_datetime_es(deadline, tz)
    text = _body(
        _greeting(reseller_name),
        f"Le recordamos que el pedido {order_id} para {company_name} sigue en espera: aún no "
        f"recibimos la aceptación de la invitación de partner en el dominio {domain}.",
        f"Un administrador global de {domain} debe abrir este enlace, iniciar sesión y aceptar "
        "a nuestro marketplace y a Ingram Micro como partners de Microsoft:\n"
        f"   {relationship_url}",
        f"Fecha límite para aceptar: {due}. Después de esa fecha el pedido se cerrará sin "
        "ningún cargo.",
        "Si su cliente ya la aceptó, no tiene que hacer nada más: la activación continúa por "
        "sí sola (Microsoft puede tardar unos minutos en reflejarlo).",
        _order_summary(order_id, company_name, domain),
    )
    return Email(
        key=key,
        kind=EmailKind.ACCEPTANCE_REMINDER.value,
        to=[reseller_email],
        subject=(
            f"Recordatorio {_ordinal(reminder_number)}: {company_name} aún no acepta la "
            f"invitación de partner (pedido {order_id})"
        ),
        text=text,
    )


def acceptance_expired(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    deadline: datetime,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """The invitation was not accepted in time: the order is closed, nothing was charged."""
    text = _body(
        _greeting(reseller_name),
        f"La invitación de partner para el pedido {order_id} de {company_name} venció el "
        f"{format_datetime_es(deadline, tz)} sin que recibiéramos la aceptación, por lo que "
        "cerramos el pedido.",
        "No se colocó ningún pedido con Microsoft ni se realizó ningún cargo.",
        "Cómo retomarlo:\n"
        f"1. Confirme con su cliente que un administrador global de {domain} puede aceptar la "
        "invitación.\n"
        "2. Envíe un pedido nuevo para el mismo dominio; le haremos llegar una invitación "
        "nueva.\n"
        "3. Si su cliente ya aceptó la relación para entonces, la activación continuará sin "
        "esperar.",
        _order_summary(order_id, company_name, domain),
    )
    return Email(
        key=key,
        kind=EmailKind.ACCEPTANCE_EXPIRED.value,
        to=[reseller_email],
        subject=f"Pedido {order_id} cerrado: {company_name} no aceptó la invitación a tiempo",
        text=text,
    )


def order_active(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    lines: Sequence[OrderLine | tuple[str, int, str, str]],
    tenant_created: bool,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    purchased_at: datetime | None = None,
) -> Email:
    """The licenses are active. Never carries a password: credentials are revealed on purpose."""
    rows = []
    for line in lines:
        product, quantity, term, cycle = OrderLine(*line)
        term_es = _TERMS.get(str(term), f"plazo {term}")
        cycle_es = _CYCLES.get(str(cycle), f"facturación {cycle}")
        rows.append(f"{product}: {_licenses(quantity)}, {term_es}, {cycle_es}")
    parts = [
        _greeting(reseller_name),
        f"¡Listo! Las licencias del pedido {order_id} para {company_name} ya están activas en "
        f"el dominio {domain}.",
        "Licencias activadas:\n" + _bullets(rows),
    ]
    if tenant_created:
        parts.append(
            "Cuenta de administrador del dominio nuevo\n"
            f"Creamos el dominio {domain} para su cliente. Por seguridad, la contraseña del "
            "administrador no viaja por correo: se entrega una sola vez, a propósito, con el "
            "comando:\n"
            f"   csp credentials reveal {order_id}\n"
            "Guárdela en un lugar seguro y entréguela a su cliente por un canal confiable. "
            "Recomendamos cambiarla en el primer inicio de sesión en el Centro de "
            f"administración de Microsoft 365 ({ADMIN_CENTER_URL})."
        )
    else:
        parts.append(
            "Su cliente ya puede asignar las licencias a sus usuarios desde el Centro de "
            f"administración de Microsoft 365 ({ADMIN_CENTER_URL})."
        )
    rules = _nce_rules(domain)
    if purchased_at is not None:
        window_end = format_datetime_es(change_window_end(_aware(purchased_at)), tz)
        rules += f"\nPara este pedido, ese plazo de 7 días termina el {window_end}."
    parts += [rules, _order_summary(order_id, company_name, domain)]
    return Email(
        key=key,
        kind=EmailKind.ORDER_ACTIVE.value,
        to=[reseller_email],
        subject=f"Licencias activas: pedido {order_id} para {company_name} ({domain})",
        text=_body(*parts),
    )


def order_cancelled(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    reason: str,
    *,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
    tenant_created: bool = False,
) -> Email:
    """Cancelled before it was placed with Microsoft, so nothing was charged."""
    parts = [
        _greeting(reseller_name),
        f"El pedido {order_id} para {company_name} ({domain}) fue cancelado.",
        f"Motivo: {reason}",
        "No se colocó ningún pedido con Microsoft ni se realizó ningún cargo.",
    ]
    if tenant_created:
        parts.append(
            f"El dominio {domain} que creamos para su cliente se conserva, sin licencias, y "
            "puede usarse en un pedido futuro. Si aún no obtuvo la contraseña del "
            f"administrador, puede obtenerla una sola vez con: csp credentials reveal {order_id}"
        )
    parts += [
        "Si la cancelación no era lo esperado, envíe un pedido nuevo cuando esté listo.",
        _order_summary(order_id, company_name, domain),
    ]
    return Email(
        key=key,
        kind=EmailKind.ORDER_CANCELLED.value,
        to=[reseller_email],
        subject=f"Pedido {order_id} cancelado ({company_name})",
        text=_body(*parts),
    )


def order_failed(
    order_id: str,
    reseller_name: str,
    reseller_email: str,
    company_name: str,
    domain: str,
    failure: OrderFailure,
    *,
    ops_email: str,
    key: str,
    tz: ZoneInfo = BUSINESS_TZ,
) -> Email:
    """The order could not be completed: why, in Spanish, and the next step for that reason.

    `failure.detail` (English, for ops) never appears: the reseller reads the code's own text.
    Ops is copied when a person has to act; a reason the reseller fixes goes to them alone.
    """
    reason, next_step = _FAILURE_TEXTS[failure.code](failure, order_id, failure.domain or domain)
    parts = [
        _greeting(reseller_name),
        f"No pudimos completar el pedido {order_id} para {company_name} ({domain}).",
        f"Motivo: {reason}",
    ]
    if failure.code.nothing_ordered:
        parts.append(
            "No se colocó ningún pedido de licencias con Microsoft ni se realizó ningún cargo."
        )
    parts += [next_step, _order_summary(order_id, company_name, domain)]
    return Email(
        key=key,
        kind=EmailKind.ORDER_FAILED.value,
        to=[reseller_email],
        cc=[ops_email] if failure.code.ops_act else [],
        subject=f"No pudimos completar el pedido {order_id} ({company_name})",
        text=_body(*parts),
    )


_OPS_WILL_CONTACT = (
    "Nuestro equipo de operaciones recibió copia de este aviso, revisará el caso y le "
    "contactará con los siguientes pasos. Por favor no vuelva a enviar el pedido mientras "
    "tanto, para evitar compras duplicadas."
)


def _domain_taken(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    return (
        f"el dominio {domain} ya está en uso: pertenece a otra organización registrada en "
        "Microsoft, por lo que no pudimos crear con ese nombre el dominio de su cliente.",
        "Cómo continuar: envíe un pedido nuevo, con un número de pedido nuevo (este número ya "
        "quedó registrado con el dominio anterior).\n"
        "1. Si ese dominio no es de su cliente, elija otro prefijo para su dominio "
        ".onmicrosoft.com y envíe el pedido nuevo en modo crear.\n"
        "2. Si el dominio sí es de su cliente (ya usa Microsoft 365 con él), envíe el pedido "
        'nuevo en modo vincular (modo "link"): le haremos llegar una invitación para que un '
        "administrador de su cliente nos acepte como partner.",
    )


def _order_conflict(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    return (
        f"el número de pedido {order_id} ya se había usado para un pedido con otro contenido. "
        "Un número de pedido identifica una sola compra, así que no procesamos este envío.",
        "Cómo continuar: si se trata de una compra distinta, envíela con un número de pedido "
        "nuevo. Si quería corregir el pedido anterior, escríbanos antes de enviar otro: "
        "volver a enviarlo con el mismo número no lo modifica.",
    )


def _tenant_conflict(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    return (
        f"el dominio {domain} está registrado en nuestro sistema con una organización de "
        "Microsoft distinta de la que encontramos para este pedido. Detuvimos el pedido para no "
        "asignar licencias a la organización equivocada.",
        _OPS_WILL_CONTACT,
    )


def _provider_rejected(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    code = f" (código de error: {failure.provider_code})" if failure.provider_code else ""
    return (
        "el proveedor de licencias rechazó una de las solicitudes necesarias para completar "
        f"el pedido{code}.",
        _OPS_WILL_CONTACT,
    )


def _provisioning_failed(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    return (
        "colocamos el pedido con Microsoft, pero Microsoft no pudo activar las licencias.",
        "Nuestro equipo de operaciones recibió copia de este aviso, revisará con Microsoft el "
        "estado de la compra y le contactará con los siguientes pasos. Por favor no vuelva a "
        "enviar el pedido: ya está registrado con Microsoft y un segundo envío podría duplicar "
        "la compra.",
    )


def _internal(failure: OrderFailure, order_id: str, domain: str) -> tuple[str, str]:
    return (
        "ocurrió un error inesperado en nuestro sistema mientras procesábamos el pedido.",
        _OPS_WILL_CONTACT,
    )


_FAILURE_TEXTS: dict[FailureCode, Callable[[OrderFailure, str, str], tuple[str, str]]] = {
    FailureCode.DOMAIN_TAKEN: _domain_taken,
    FailureCode.ORDER_CONFLICT: _order_conflict,
    FailureCode.TENANT_CONFLICT: _tenant_conflict,
    FailureCode.PROVIDER_REJECTED: _provider_rejected,
    FailureCode.PROVISIONING_FAILED: _provisioning_failed,
    FailureCode.INTERNAL: _internal,
}


# --- renewal side ----------------------------------------------------------------------------


def renewal_notice(renewal: RenewalDetails, *, key: str, tz: ZoneInfo = BUSINESS_TZ) -> Email:
    """The billing period opened: amount and cutoff."""
    r = renewal
    text = _body(
        _greeting(r.reseller_name),
        f"Se abrió el periodo de facturación de {format_period_es(r.billing_period)} de la "
        f"suscripción {r.product_name} de {r.company_name}. El monto a pagar es "
        f"{format_mxn(r.amount)} y debe pagarse {_cutoff_phrase(r.cutoff, tz)}.",
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
    text = _body(
        _greeting(r.reseller_name),
        f"Le recordamos que el pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name} "
        f"sigue pendiente. Debe pagarse {_cutoff_phrase(r.cutoff, tz)}.",
        _renewal_summary(r, tz),
        "Si ya realizó el pago, gracias: puede ignorar este mensaje; en cuanto se registre "
        "le enviaremos la confirmación.",
    )
    return Email(
        key=key,
        kind=EmailKind.RENEWAL_REMINDER.value,
        to=[r.reseller_email],
        subject=_renewal_subject(f"Recordatorio {_ordinal(reminder_number)} de pago", r),
        text=text,
    )


def renewal_escalation(
    renewal: RenewalDetails, ops_email: str, *, key: str, tz: ZoneInfo = BUSINESS_TZ
) -> Email:
    """Close to the cutoff and still unpaid: ops is copied to follow up personally."""
    r = renewal
    text = _body(
        _greeting(r.reseller_name),
        f"El pago de {format_mxn(r.amount)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name} "
        f"sigue pendiente y la fecha límite está cerca: debe pagarse "
        f"{_cutoff_phrase(r.cutoff, tz)}.",
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
    last_day = format_date_es(_last_day_before(r.cutoff, tz).date())
    text = _body(
        _greeting(r.reseller_name),
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
    text = _body(
        _greeting(r.reseller_name),
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
    text = _body(
        _greeting(r.reseller_name),
        f"Suspendimos la suscripción {r.product_name} de {r.company_name} ({r.domain}) por "
        f"falta de pago de la renovación de {format_period_es(r.billing_period)}.",
        "Qué significa:\n"
        + _bullets(
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
    text = _body(
        _greeting(r.reseller_name),
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
    text = _body(
        _greeting(r.reseller_name),
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
    text = _body(
        _greeting(r.reseller_name),
        f"Registramos un pago de {format_mxn(paid_now)} de la renovación de "
        f"{format_period_es(r.billing_period)} de {r.product_name} para {r.company_name}. "
        f"El monto de la renovación es {format_mxn(r.amount)}: llevamos recibidos "
        f"{format_mxn(r.amount_paid)} y quedan {format_mxn(r.amount_due)} por pagar, "
        f"{_cutoff_phrase(r.cutoff, tz)}.",
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
    text = _body(
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
    text = _body(
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
        _greeting(reseller_name),
        f"La suscripción {subscription_id} de {product_name} ({_licenses(seats)}) para "
        f"{company_name} en el dominio {domain} fue cancelada el "
        f"{format_datetime_es(_aware(cancelled_at), tz)}.",
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
        subject=_one_line(f"Suscripción cancelada: {product_name}, {company_name} ({domain})"),
        text=_body(*parts),
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
        f"Suscripción: {t.product_name} ({_licenses(t.seats)}), ID {t.subscription_id}",
        f"Duración: {_TERMS.get(t.term, t.term)}, {_CYCLES.get(t.billing_cycle, t.billing_cycle)}",
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
    text = _body(
        _greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({_licenses(t.seats)}) para "
        f"{t.company_name} en el dominio {t.domain} se renovó automáticamente por otro "
        f"{_TERMS.get(t.term, t.term)}. El nuevo plazo comenzó el "
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
        subject=_one_line(_term_subject("Suscripción renovada", t)),
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
            f"{_TERMS.get(t.term, t.term)} al terminar el plazo actual."
        )
    text = _body(
        _greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({_licenses(t.seats)}) para "
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
        subject=_one_line(_term_subject(f"Su suscripción vence en {days_before} días", t)),
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
    text = _body(
        _greeting(t.reseller_name),
        f"La suscripción {t.subscription_id} de {t.product_name} ({_licenses(t.seats)}) para "
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
        subject=_one_line(_term_subject("Suscripción vencida", t)),
        text=text,
    )
