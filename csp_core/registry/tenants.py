"""Tenants: a domain bound to one provider tenant id, and the resellers that may transact on it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from csp_core.orders.models import ONMICROSOFT_SUFFIX
from csp_core.registry.errors import TenantConflict, UnknownTenant
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import Tenant, TenantReseller, utcnow


class TenantOrigin(StrEnum):
    CREATED = "created"
    LINKED = "linked"


class TenantRecord(Record):
    domain: str
    tenant_id: str
    company_name: str
    reseller_id: str
    origin: TenantOrigin
    created_at: datetime


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower()
    if not value.endswith(ONMICROSOFT_SUFFIX) or len(value) == len(ONMICROSOFT_SUFFIX):
        raise ValueError(f"tenant domain must be <prefix>{ONMICROSOFT_SUFFIX} (got {domain!r})")
    return value


class TenantStore(Store):
    """The tenants aggregate."""

    def record_tenant(
        self,
        domain: str,
        tenant_id: str,
        company_name: str,
        reseller_id: str,
        origin: TenantOrigin | str,
    ) -> TenantRecord:
        """Bind a domain to a provider tenant id, once. Re-recording the same pair is a no-op."""
        domain = normalize_domain(domain)
        stmt = (
            self._insert(Tenant)
            .values(
                domain=domain,
                tenant_id=tenant_id,
                company_name=company_name,
                reseller_id=reseller_id,
                origin=TenantOrigin(origin).value,
                created_at=utcnow(),
            )
            # No target: the domain (pk) and the tenant id (unique) are both checked below.
            .on_conflict_do_nothing()
        )
        with self._tx(write=True) as session:
            session.execute(stmt)
            tenant = session.get(Tenant, domain)
            if tenant is not None and tenant.tenant_id == tenant_id:
                self._add_owner(session, domain, tenant.reseller_id, tenant.origin)
            if tenant is None:
                other = session.scalars(select(Tenant).where(Tenant.tenant_id == tenant_id)).one()
                raise TenantConflict(
                    f"tenant id {tenant_id} is already registered as {other.domain}; "
                    f"it cannot also be {domain}"
                )
            if tenant.tenant_id != tenant_id:
                raise TenantConflict(
                    f"domain {domain} is already bound to tenant id {tenant.tenant_id}; "
                    f"refusing to bind it to {tenant_id}"
                )
            return TenantRecord.model_validate(tenant)

    def _add_owner(self, session: Session, domain: str, reseller_id: str, via: str) -> None:
        session.execute(
            self._insert(TenantReseller)
            .values(domain=domain, reseller_id=reseller_id, via=via, since=utcnow())
            .on_conflict_do_nothing(index_elements=["domain", "reseller_id"])
        )

    def add_tenant_reseller(self, domain: str, reseller_id: str, via: str = "accepted") -> None:
        """The reseller's client accepted them as partner on this tenant (idempotent)."""
        domain = normalize_domain(domain)
        with self._tx(write=True) as session:
            if session.get(Tenant, domain) is None:
                raise UnknownTenant(f"tenant {domain} is not recorded")
            self._add_owner(session, domain, reseller_id, via)

    def tenant_resellers(self, domain: str) -> set[str]:
        """The resellers that may transact on the tenant."""
        with self._tx() as session:
            rows = session.scalars(
                select(TenantReseller.reseller_id).where(
                    TenantReseller.domain == domain.strip().lower()
                )
            )
            return set(rows)

    def get_tenant(self, domain: str) -> TenantRecord | None:
        """A Core SELECT, no ORM session: each order asks once or twice (issue 11)."""
        stmt = select(*Tenant.__table__.c).where(Tenant.domain == domain.strip().lower())
        with self.engine.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return TenantRecord.model_validate(row) if row is not None else None

    def list_tenants(self) -> list[TenantRecord]:
        """Every tenant we know, by domain."""
        with self._tx() as session:
            rows = session.scalars(select(Tenant).order_by(Tenant.domain))
            return [TenantRecord.model_validate(row) for row in rows]
