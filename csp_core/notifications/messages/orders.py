"""The order side's e-mails: invitation, reminders, expiry, active, cancelled, failed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from csp_core.calendar import format_datetime_es
from csp_core.notifications.messages.wording import (
    ADMIN_CENTER_URL,
    CYCLES,
    TERMS,
    Email,
    EmailKind,
    aware,
    body,
    bullets,
    greeting,
    licenses,
    nce_rules,
    ordinal,
)
from csp_core.orders.failures import FailureCode, OrderFailure
from csp_core.subscriptions.windows import change_window_end
from csp_core.timezones import BUSINESS_TZ


class OrderLine(NamedTuple):
    """One activated line; plain tuples (product_name, quantity, term, billing_cycle) work too."""

    product_name: str
    quantity: int
    term: str
    billing_cycle: str


def _order_summary(order_id: str, company_name: str, domain: str) -> str:
    return f"Pedido: {order_id}\nCliente: {company_name}\nDominio Microsoft: {domain}"


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
    text = body(
        greeting(reseller_name),
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
    text = body(
        greeting(reseller_name),
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
            f"Recordatorio {ordinal(reminder_number)}: {company_name} aún no acepta la "
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
    text = body(
        greeting(reseller_name),
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
        term_es = TERMS.get(str(term), f"plazo {term}")
        cycle_es = CYCLES.get(str(cycle), f"facturación {cycle}")
        rows.append(f"{product}: {licenses(quantity)}, {term_es}, {cycle_es}")
    parts = [
        greeting(reseller_name),
        f"¡Listo! Las licencias del pedido {order_id} para {company_name} ya están activas en "
        f"el dominio {domain}.",
        "Licencias activadas:\n" + bullets(rows),
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
    rules = nce_rules(domain)
    if purchased_at is not None:
        window_end = format_datetime_es(change_window_end(aware(purchased_at)), tz)
        rules += f"\nPara este pedido, ese plazo de 7 días termina el {window_end}."
    parts += [rules, _order_summary(order_id, company_name, domain)]
    return Email(
        key=key,
        kind=EmailKind.ORDER_ACTIVE.value,
        to=[reseller_email],
        subject=f"Licencias activas: pedido {order_id} para {company_name} ({domain})",
        text=body(*parts),
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
        greeting(reseller_name),
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
        text=body(*parts),
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
        greeting(reseller_name),
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
        text=body(*parts),
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
