"""Idempotency-Keys of HTTP callers: the first use of a key within its scope wins.

The scope is where a key's meaning lives: a subscription (its changes are Workflow Updates
whose id is the key) or payments. The first claim records a digest of the request; a later
request with the same key is compared with it by the caller, and gets the stored answer back
once the first one succeeded. Claims and completions are single statements, so concurrent
requests with one key agree on the first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update

from csp_core.registry.store import Record, Store
from csp_core.registry.tables import IdempotencyKey, utcnow


class IdempotencyRecord(Record):
    scope: str
    key: str
    fingerprint: str
    request: str
    status_code: int | None
    response: str | None
    created_at: datetime
    completed_at: datetime | None

    @property
    def completed(self) -> bool:
        return self.status_code is not None


class IdempotencyStore(Store):
    """The Idempotency-Keys aggregate."""

    def claim_idempotency_key(
        self, scope: str, key: str, fingerprint: str, request: str
    ) -> IdempotencyRecord:
        """Record the key's first use, or return it as first recorded (compare fingerprints)."""
        stmt = (
            self._insert(IdempotencyKey)
            .values(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                request=request[:300],
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
        )
        with self._tx(write=True) as session:
            session.execute(stmt)
            return IdempotencyRecord.model_validate(session.get_one(IdempotencyKey, (scope, key)))

    def complete_idempotency_key(
        self, scope: str, key: str, status_code: int, response: str
    ) -> IdempotencyRecord:
        """Store the answer to the key's request; the first answer stored stays."""
        with self._tx(write=True) as session:
            session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.scope == scope,
                    IdempotencyKey.key == key,
                    IdempotencyKey.status_code.is_(None),
                )
                .values(status_code=status_code, response=response, completed_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
            row = session.get_one(IdempotencyKey, (scope, key))
            session.refresh(row)
            return IdempotencyRecord.model_validate(row)

    def prune_idempotency_keys(self, created_before: datetime) -> int:
        """Forget the keys first used before `created_before` (their retention is over); a
        repeat after that is a new request. Returns how many were forgotten."""
        with self._tx(write=True) as session:
            result = session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.created_at < created_before),
                execution_options={"synchronize_session": False},
            )
            return int(result.rowcount or 0)
