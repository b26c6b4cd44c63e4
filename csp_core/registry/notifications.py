"""The e-mail ledger: one row per notice, so a notice is sent at most once and never lost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from csp_core.registry.store import Record, Store
from csp_core.registry.tables import Notification, as_utc, utcnow


class NotificationStatus(StrEnum):
    """Where a notice stands in the e-mail ledger."""

    PENDING = "pending"  # claimed; not confirmed sent (an attempt failed, or is in flight, or died)
    SENT = "sent"  # the mail server took it
    UNDELIVERABLE = "undeliverable"  # the mail server refused it for good: ops has to act


class NotificationRecord(Record):
    """One notice in the e-mail ledger, as ops see it (no body, no secrets)."""

    key: str
    kind: str
    recipient: str
    order_id: str | None
    subscription_id: str | None
    period: str | None
    status: NotificationStatus
    claimed_at: datetime
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    undeliverable_at: datetime | None
    undeliverable_reason: str | None


_COLUMNS = tuple(Notification.__table__.c)
_READ = select(*_COLUMNS).where(Notification.key == bindparam("b_key"))
_MARK_SENT = (
    update(Notification)
    .where(
        Notification.key == bindparam("b_key"),
        Notification.status != NotificationStatus.SENT.value,
    )
    .values(status=NotificationStatus.SENT.value, sent_at=bindparam("b_now"))
    .returning(*_COLUMNS)
)


@cache
def _claim_statement(dialect: str) -> Any:
    """INSERT the pending claim, or count one more attempt on a PENDING row; RETURNING the row
    (nothing when the row is SENT or UNDELIVERABLE: the update's WHERE leaves it alone)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Notification).values(
        key=bindparam("b_key"),
        kind=bindparam("b_kind"),
        recipient=bindparam("b_recipient"),
        order_id=bindparam("b_order_id"),
        subscription_id=bindparam("b_subscription_id"),
        period=bindparam("b_period"),
        status=NotificationStatus.PENDING.value,
        claimed_at=bindparam("b_now"),
        attempts=1,
        last_attempt_at=bindparam("b_now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"attempts": Notification.attempts + 1, "last_attempt_at": bindparam("b_now")},
        where=Notification.status == NotificationStatus.PENDING.value,
    ).returning(*_COLUMNS)


def _short(text: str, limit: int = 500) -> str:
    """One line of at most `limit` characters (what the ledger's error columns hold)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class NotificationStore(Store):
    """The e-mail ledger."""

    def begin_notification_attempt(
        self,
        key: str,
        kind: str,
        recipient: str,
        order_id: str | None = None,
        subscription_id: str | None = None,
        period: str | None = None,
    ) -> NotificationRecord:
        """Claim the notice (a new pending row) or count one more attempt on its pending row.

        Returns the row as it stands: the caller sends only while it is PENDING. A SENT or
        UNDELIVERABLE row is returned untouched.
        """
        now = utcnow()
        params = {
            "b_key": key,
            "b_kind": kind,
            "b_recipient": recipient,
            "b_order_id": order_id,
            "b_subscription_id": subscription_id,
            "b_period": period,
            "b_now": now,
        }
        return self._ledger_write(_claim_statement(self._dialect), params)

    def mark_notification_sent(self, key: str) -> NotificationRecord:
        """The mail server took the notice. Also settles an UNDELIVERABLE row (a later attempt
        got through after all); a SENT row keeps its first sent_at."""
        return self._ledger_write(_MARK_SENT, {"b_key": key, "b_now": utcnow()})

    def mark_notification_failed(
        self, key: str, error: str, *, permanent: bool
    ) -> NotificationRecord:
        """Record a failed attempt on a PENDING row. `permanent`: the mail server refused it for
        good, so the row becomes UNDELIVERABLE with `error` as the reason; otherwise it stays
        PENDING for the next attempt. `error` must be free of secrets (it is shown to ops)."""
        short = _short(error)
        now = utcnow()
        values: dict[str, Any] = {"last_error": short}
        if permanent:
            values |= {
                "status": NotificationStatus.UNDELIVERABLE.value,
                "undeliverable_at": now,
                "undeliverable_reason": short,
            }
        stmt = (
            update(Notification)
            .where(
                Notification.key == bindparam("b_key"),
                Notification.status == NotificationStatus.PENDING.value,
            )
            .values(**values)
        )
        return self._ledger_write(stmt.returning(*_COLUMNS), {"b_key": key})

    def get_notification(self, key: str) -> NotificationRecord | None:
        with self._tx() as session:
            row = session.get(Notification, key)
            return NotificationRecord.model_validate(row) if row is not None else None

    def list_notifications(
        self,
        status: NotificationStatus | str | Iterable[NotificationStatus | str] | None = None,
        *,
        older_than: datetime | None = None,
        order_id: str | None = None,
        subscription_id: str | None = None,
        limit: int | None = None,
    ) -> list[NotificationRecord]:
        """Ledger rows, oldest claim first. For ops: `status=UNDELIVERABLE` lists what a person
        must follow up; `status=PENDING, older_than=now - 1h` lists notices still not delivered
        an hour after they were first tried (an SMTP outage being retried, or a stuck one)."""
        stmt = select(Notification).order_by(Notification.claimed_at, Notification.key)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(
                Notification.status.in_([NotificationStatus(s).value for s in wanted])
            )
        if older_than is not None:
            stmt = stmt.where(Notification.claimed_at < as_utc(older_than))
        if order_id is not None:
            stmt = stmt.where(Notification.order_id == order_id)
        if subscription_id is not None:
            stmt = stmt.where(Notification.subscription_id == subscription_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._tx() as session:
            return [NotificationRecord.model_validate(row) for row in session.scalars(stmt)]

    def _ledger_write(self, stmt: Any, params: dict[str, Any]) -> NotificationRecord:
        """One ledger write and the row as it then stands. Statements built once: two of these
        writes run for every e-mail (claim, then sent)."""
        row = self._write_returning(stmt, _READ, params)
        if row is None:
            raise LookupError(f"notification {params['b_key']} is not in the ledger")
        return NotificationRecord.model_validate(row)

    @staticmethod
    def _notification(session: Session, key: str) -> NotificationRecord:
        row = session.scalars(
            select(Notification)
            .where(Notification.key == key)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if row is None:
            raise LookupError(f"notification {key} is not in the ledger")
        return NotificationRecord.model_validate(row)
