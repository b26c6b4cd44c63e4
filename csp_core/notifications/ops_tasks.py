"""The e-mails of ops tasks (csp_core/ops/tasks.py), in Spanish like every other message: to ops,
the operation to do by hand in the provider's portal with its exact values, its deadline and how
to confirm it, then reminders, the escalation when it is overdue, and a withdrawal when it is no
longer needed; to the reseller, when a change they asked for was not made.

Pure builders (no I/O, no clock), like messages.py: the same notice builds the same e-mail.
"""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo

from csp_core.calendar import format_datetime_es, format_period_es
from csp_core.notifications.messages.wording import Email, body, greeting, licenses, one_line
from csp_core.ops.tasks import OpsNoticeKind, OpsOperation, OpsTask, OpsTaskNotice
from csp_core.timezones import BUSINESS_TZ


class OpsEmailKind(StrEnum):
    OPS_TASK = "ops_task"
    OPS_TASK_REMINDER = "ops_task_reminder"
    OPS_TASK_OVERDUE = "ops_task_overdue"
    OPS_TASK_WITHDRAWN = "ops_task_withdrawn"
    SUBSCRIPTION_CHANGE_DECLINED = "subscription_change_declined"


_ACTION = {
    OpsOperation.SUSPEND: "Suspender la suscripción",
    OpsOperation.REACTIVATE: "Reactivar la suscripción",
    OpsOperation.CHANGE_SEATS: "Cambiar el número de licencias",
    OpsOperation.CANCEL: "Cancelar la suscripción",
    OpsOperation.SET_AUTO_RENEW: "Cambiar la renovación automática",
}
_WHAT_RESELLER_ASKED = {
    OpsOperation.CHANGE_SEATS: "el cambio de licencias",
    OpsOperation.CANCEL: "la cancelación",
    OpsOperation.SET_AUTO_RENEW: "el cambio de la renovación automática",
}


def _action(task: OpsTask) -> str:
    match task.operation:
        case OpsOperation.CHANGE_SEATS:
            return (
                f"Cambiar de {licenses(task.seats_before or 0)} a {licenses(task.seats or 0)} "
                "(total de la suscripción)"
            )
        case OpsOperation.SET_AUTO_RENEW:
            state = "activar" if task.auto_renew else "desactivar"
            return f"{state.capitalize()} la renovación automática"
        case _:
            return _ACTION[task.operation]


def _values(task: OpsTask) -> str:
    rows = [
        f"Acción: {_action(task)}",
        f"ID de la suscripción: {task.subscription_id}",
        f"Dominio Microsoft: {task.domain}",
        f"Producto: {task.product_name}",
        f"Cliente: {task.company_name} (revendedor {task.reseller_id})",
    ]
    if task.period is not None:
        rows.append(f"Renovación de: {format_period_es(task.period)}")
    rows.append(f"Motivo: {_reason(task)}")
    return "\n".join(rows)


def _reason(task: OpsTask) -> str:
    """Why it is asked, in Spanish (the task's own `reason` is the English one for the
    details and the CLI)."""
    period = format_period_es(task.period) if task.period else ""
    match task.operation:
        case OpsOperation.SUSPEND:
            return (
                f"la renovación de {period} no se pagó antes de la fecha límite y la política "
                "es suspender"
            )
        case OpsOperation.REACTIVATE:
            return f"la renovación de {period} ya se pagó y la suscripción sigue suspendida"
        case _:
            return f"lo solicitó el revendedor {task.reseller_id} (solicitud {task.change_id})"


def _how_to_answer(task: OpsTask) -> str:
    lines = [
        "Cuando esté hecho, confírmelo con la referencia del portal:",
        f"  csp ops confirm {task.workflow_id} {task.task_id} --reference <referencia>",
    ]
    if task.policy.declinable:
        lines += [
            "Si no es posible hacerlo, indíquelo con el motivo:",
            f"  csp ops decline {task.workflow_id} {task.task_id} --reason <motivo>",
        ]
    lines.append(
        "Hasta su confirmación el sistema no da la operación por hecha: no registra el cambio "
        "ni lo comunica como realizado."
    )
    return "\n".join(lines)


def _subject(prefix: str, task: OpsTask) -> str:
    return one_line(
        f"{prefix}: {_ACTION[task.operation].lower()} en {task.provider} | "
        f"{task.product_name}, {task.company_name} ({task.domain}) [{task.task_id}]"
    )


def ops_task_email(notice: OpsTaskNotice, ops_email: str, *, tz: ZoneInfo = BUSINESS_TZ) -> Email:
    """To ops (or, for DECLINED, to the reseller): the e-mail of one ops task notice."""
    task = notice.task
    due = format_datetime_es(task.deadline, tz)
    portal = f"{task.provider} no ofrece una API para esta operación: hágala a mano en su portal."
    match notice.kind:
        case OpsNoticeKind.ASKED:
            kind, subject = OpsEmailKind.OPS_TASK, _subject("Acción requerida", task)
            parts = [portal, _values(task), f"Fecha límite: {due}.", _how_to_answer(task)]
        case OpsNoticeKind.REMINDER:
            kind = OpsEmailKind.OPS_TASK_REMINDER
            subject = _subject(f"Recordatorio {notice.number}", task)
            parts = [
                f"Sigue pendiente (pedida el {format_datetime_es(task.asked_at, tz)}). {portal}",
                _values(task),
                f"Fecha límite: {due}.",
                _how_to_answer(task),
            ]
        case OpsNoticeKind.OVERDUE | OpsNoticeKind.STILL_OVERDUE:
            kind, subject = OpsEmailKind.OPS_TASK_OVERDUE, _subject("VENCIDA", task)
            parts = [
                f"La fecha límite era el {due} y nadie ha confirmado la operación: el sistema la "
                f"sigue considerando NO realizada. {portal}",
                _values(task),
                _how_to_answer(task),
            ]
        case OpsNoticeKind.WITHDRAWN:
            kind, subject = OpsEmailKind.OPS_TASK_WITHDRAWN, _subject("Ya no es necesario", task)
            parts = [
                f"Ya no hace falta: {task.note or 'la operación dejó de ser necesaria'}.",
                _values(task),
                _withdrawn_advice(task),
            ]
        case OpsNoticeKind.DECLINED:
            return _declined(notice)
    return Email(
        key=notice.key,
        kind=kind.value,
        to=[ops_email],
        subject=subject,
        text=body("Equipo de operaciones:", *parts),
    )


def _withdrawn_advice(task: OpsTask) -> str:
    if task.operation is OpsOperation.SUSPEND:
        return (
            "No la suspenda. Si ya la suspendió en el portal, reactívela ahí mismo: el sistema "
            "la considera activa."
        )
    return "No la realice. Si ya la hizo en el portal, avise al equipo: el sistema no la registró."


def _declined(notice: OpsTaskNotice) -> Email:
    """To the reseller: the change they asked for could not be made (ops' reason)."""
    task = notice.task
    if notice.reseller_email is None or notice.reseller_name is None:
        raise ValueError("a declined notice needs the reseller's name and e-mail")
    what = _WHAT_RESELLER_ASKED.get(task.operation, "la operación")
    text = body(
        greeting(notice.reseller_name),
        f"No fue posible realizar {what} que solicitó para la suscripción "
        f"{task.subscription_id} de {task.product_name} de {task.company_name} (dominio "
        f"{task.domain}): {task.note or 'el distribuidor no la aceptó'}.",
        f"La suscripción sigue como estaba ({_action(task).lower()}: no se realizó). Si lo "
        "necesita, solicítelo de nuevo o responda a este correo.",
    )
    return Email(
        key=notice.key,
        kind=OpsEmailKind.SUBSCRIPTION_CHANGE_DECLINED.value,
        to=[notice.reseller_email],
        subject=one_line(
            f"No se realizó {what}: {task.product_name}, {task.company_name} ({task.domain})"
        ),
        text=text,
    )
