"""Orders as recorded: their fingerprint, reseller, domain and stage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from csp_core.orders.models import TenantMode
from csp_core.registry.errors import OrderConflict, UnknownOrder
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import Order, utcnow
from csp_core.stages import OrderStage


class OrderRecord(Record):
    order_id: str
    fingerprint: str
    reseller_id: str
    reseller_name: str | None = None
    reseller_email: str | None = None
    domain: str
    tenant_mode: TenantMode
    stage: OrderStage
    stage_detail: str | None
    provider_order_id: str | None
    created_at: datetime
    updated_at: datetime


class OrderStore(Store):
    """The orders aggregate."""

    def record_order(
        self,
        order_id: str,
        fingerprint: str,
        reseller_id: str,
        domain: str,
        tenant_mode: TenantMode | str,
        reseller_name: str | None = None,
        reseller_email: str | None = None,
        stage: OrderStage | str = OrderStage.RECEIVED,
        detail: str | None = None,
    ) -> OrderRecord:
        """Insert the order at `stage`, or return it if already there with the same
        fingerprint (its stage as it is)."""
        now = utcnow()
        stmt = (
            self._insert(Order)
            .values(
                order_id=order_id,
                fingerprint=fingerprint,
                reseller_id=reseller_id,
                reseller_name=reseller_name,
                reseller_email=reseller_email,
                domain=domain.strip().lower(),
                tenant_mode=TenantMode(tenant_mode).value,
                stage=OrderStage(stage).value,
                stage_detail=detail,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["order_id"])
        )
        with self._writer.begin() as conn:  # Core, as set_order_stage
            conn.execute(stmt)
            order = conn.execute(select(*Order.__table__.c).where(Order.order_id == order_id)).one()
        if order.fingerprint != fingerprint:
            raise OrderConflict(
                f"order {order_id} is already recorded with different content; "
                "an order id cannot be reused for another order"
            )
        return OrderRecord.model_validate(order)

    def get_order(self, order_id: str) -> OrderRecord | None:
        with self._tx() as session:
            order = session.get(Order, order_id)
            return OrderRecord.model_validate(order) if order else None

    def latest_order_for(self, domain: str, reseller_id: str) -> OrderRecord | None:
        """The reseller's most recent order on the tenant, preferring one that names the
        reseller's contact (orders recorded before 0003 do not): who to write to about a license
        no order of ours bought."""
        with self._tx() as session:
            order = session.scalars(
                select(Order)
                .where(Order.domain == domain.strip().lower(), Order.reseller_id == reseller_id)
                .order_by(Order.reseller_email.is_(None), Order.created_at.desc(), Order.order_id)
                .limit(1)
            ).first()
            return OrderRecord.model_validate(order) if order else None

    def set_order_stage(
        self,
        order_id: str,
        stage: OrderStage | str,
        detail: str | None = None,
        provider_order_id: str | None = None,
    ) -> OrderRecord:
        """Set the stage and its detail (None clears it); provider_order_id is only ever set.

        One Core UPDATE ... RETURNING, no ORM session: an order sets its stage three to five
        times, and the session and a second SELECT cost more than the write (issue 11)."""
        values: dict[str, Any] = {
            "stage": OrderStage(stage).value,
            "stage_detail": detail,
            "updated_at": utcnow(),
        }
        if provider_order_id is not None:
            values["provider_order_id"] = provider_order_id
        stmt = (
            update(Order)
            .where(Order.order_id == order_id)
            .values(**values)
            .returning(*Order.__table__.c)
        )
        with self._writer.begin() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            raise UnknownOrder(f"order {order_id} is not recorded")
        return OrderRecord.model_validate(row)

    def find_orders(
        self,
        *,
        stages: list[OrderStage] | None = None,
        domain: str | None = None,
        provider_order_id: str | None = None,
    ) -> list[OrderRecord]:
        """Orders at any of `stages`, of a tenant domain, or with the provider's order id
        (the filters given, together): who a provider's event is about."""
        query = select(Order).order_by(Order.created_at, Order.order_id)
        if stages is not None:
            query = query.where(Order.stage.in_([OrderStage(s).value for s in stages]))
        if domain is not None:
            query = query.where(Order.domain == domain.strip().lower())
        if provider_order_id is not None:
            query = query.where(Order.provider_order_id == provider_order_id)
        with self._tx() as session:
            return [OrderRecord.model_validate(o) for o in session.scalars(query)]
