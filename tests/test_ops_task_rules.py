"""Ops tasks' timing rules and e-mails (pure): when a task is due, when ops are reminded, what
the e-mails say (Spanish, the exact values, how to confirm or decline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csp_core.notifications.ops_tasks import OpsEmailKind, ops_task_email
from csp_core.ops.tasks import (
    OPS_TASK_POLICIES,
    OVERDUE_REMIND_EVERY,
    OpsNoticeKind,
    OpsOperation,
    OpsTask,
    OpsTaskNotice,
    ReminderKind,
    task_deadline,
)

ASKED = datetime(2026, 5, 26, 6, 0, tzinfo=UTC)  # 00:00 in Mexico City: a cutoff
OPS = "ops@test.example.mx"


def task(operation: OpsOperation = OpsOperation.SUSPEND, **changes: object) -> OpsTask:
    values: dict[str, object] = dict(
        task_id=f"{operation.value}-2026-05",
        workflow_id="renewal-sub-1-2026-05",
        operation=operation,
        provider="Ingram Micro Xvantage",
        subscription_id="sub-1",
        domain="contosomx.onmicrosoft.com",
        product_name="Microsoft 365 Business Basic",
        company_name="Contoso México SA de CV",
        reseller_id="RSL-042",
        reason="unpaid at the cutoff",
        asked_at=ASKED,
        deadline=task_deadline(operation, ASKED),
        period="2026-05",
    )
    values.update(changes)
    return OpsTask.model_validate(values)


def test_every_operation_has_a_policy_and_reactivation_is_the_urgent_one() -> None:
    assert set(OPS_TASK_POLICIES) == set(OpsOperation)
    assert task_deadline(OpsOperation.REACTIVATE, ASKED) == ASKED + timedelta(hours=4)
    assert task_deadline(OpsOperation.SUSPEND, ASKED) == ASKED + timedelta(hours=24)
    assert not OPS_TASK_POLICIES[OpsOperation.REACTIVATE].declinable


def test_a_hard_limit_earlier_than_the_policy_is_the_deadline() -> None:
    window_end = ASKED + timedelta(hours=3)  # the 168 h window closes in 3 h
    assert task_deadline(OpsOperation.CANCEL, ASKED, window_end) == window_end
    later = ASKED + timedelta(days=5)
    assert task_deadline(OpsOperation.CANCEL, ASKED, later) == ASKED + timedelta(hours=24)


def test_reminders_before_the_deadline_then_the_escalation_then_daily() -> None:
    t = task()
    steps = []
    for _ in range(8):
        at, kind = t.next_reminder()
        steps.append((at - ASKED, kind))
        t = t.model_copy(
            update={
                "reminders_sent": t.reminders_sent + (kind is ReminderKind.REMINDER),
                "overdue": t.overdue or kind is ReminderKind.OVERDUE,
                "overdue_reminders_sent": t.overdue_reminders_sent
                + (kind is ReminderKind.STILL_OVERDUE),
            }
        )
    hours = timedelta(hours=1)
    assert steps == [
        *((h * hours, ReminderKind.REMINDER) for h in (4, 8, 12, 16, 20)),
        (24 * hours, ReminderKind.OVERDUE),
        (24 * hours + OVERDUE_REMIND_EVERY, ReminderKind.STILL_OVERDUE),
        (24 * hours + 2 * OVERDUE_REMIND_EVERY, ReminderKind.STILL_OVERDUE),
    ]


def test_no_reminder_at_the_deadline_itself_when_it_falls_on_one() -> None:
    t = task(OpsOperation.CANCEL, deadline=ASKED + timedelta(hours=8))
    assert t.next_reminder() == (ASKED + timedelta(hours=4), ReminderKind.REMINDER)
    t = t.model_copy(update={"reminders_sent": 1})
    assert t.next_reminder() == (ASKED + timedelta(hours=8), ReminderKind.OVERDUE)


def test_the_e_mail_to_ops_names_the_values_the_deadline_and_the_commands() -> None:
    notice = OpsTaskNotice(kind=OpsNoticeKind.ASKED, task=task())
    email = ops_task_email(notice, OPS)

    assert email.to == [OPS] and email.kind == OpsEmailKind.OPS_TASK.value
    assert email.key == "renewal-sub-1-2026-05:ops-suspend-2026-05:asked"
    assert "suspend-2026-05" in email.subject and "Ingram Micro Xvantage" in email.subject
    text = email.text
    assert "Equipo de operaciones:" in text
    assert "ID de la suscripción: sub-1" in text and "contosomx.onmicrosoft.com" in text
    assert "Fecha límite: 27 de mayo de 2026, 00:00 h (hora del centro de México)" in text
    assert "csp ops confirm renewal-sub-1-2026-05 suspend-2026-05 --reference" in text
    assert "csp ops decline" in text
    assert "no da la operación por hecha" in text
    assert "Motivo: la renovación de mayo de 2026 no se pagó antes de la fecha límite" in text


def test_a_reactivation_cannot_be_declined_so_its_e_mail_offers_no_decline() -> None:
    email = ops_task_email(
        OpsTaskNotice(kind=OpsNoticeKind.ASKED, task=task(OpsOperation.REACTIVATE)), OPS
    )
    assert "csp ops confirm" in email.text and "csp ops decline" not in email.text


def test_seats_and_auto_renew_tasks_say_exactly_what_to_set() -> None:
    seats = task(OpsOperation.CHANGE_SEATS, seats_before=10, seats=15, period=None)
    assert (
        "Cambiar de 10 licencias a 15 licencias"
        in ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.ASKED, task=seats), OPS).text
    )
    assert "Set the seats of subscription sub-1" in seats.instruction()
    off = task(OpsOperation.SET_AUTO_RENEW, auto_renew=False, period=None)
    assert (
        "Desactivar la renovación automática"
        in ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.ASKED, task=off), OPS).text
    )


def test_reminders_overdue_and_withdrawal_have_their_own_keys_and_words() -> None:
    t = task()
    reminder = ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.REMINDER, task=t, number=2), OPS)
    assert reminder.key.endswith(":reminder-2") and "Recordatorio 2" in reminder.subject
    overdue = ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.OVERDUE, task=t), OPS)
    assert "VENCIDA" in overdue.subject and "NO realizada" in overdue.text
    gone = t.model_copy(update={"note": "the charge was paid (SPEI-1)"})
    withdrawn = ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.WITHDRAWN, task=gone), OPS)
    assert "the charge was paid" in withdrawn.text
    assert "Si ya la suspendió en el portal, reactívela" in withdrawn.text


def test_a_declined_change_is_told_to_the_reseller_in_spanish() -> None:
    declined = task(OpsOperation.CANCEL, period=None, note="la ventana de 168 horas ya cerró")
    email = ops_task_email(
        OpsTaskNotice(
            kind=OpsNoticeKind.DECLINED,
            task=declined,
            reseller_name="Integradora Norte",
            reseller_email="compras@integradoranorte.mx",
        ),
        OPS,
    )
    assert email.to == ["compras@integradoranorte.mx"]
    assert email.kind == OpsEmailKind.SUBSCRIPTION_CHANGE_DECLINED.value
    assert "No fue posible realizar la cancelación" in email.text
    assert "la ventana de 168 horas ya cerró" in email.text
    with pytest.raises(ValueError, match="reseller"):
        ops_task_email(OpsTaskNotice(kind=OpsNoticeKind.DECLINED, task=declined), OPS)
