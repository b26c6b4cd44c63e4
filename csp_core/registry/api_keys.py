"""HTTP API keys: made once, shown once, stored as a SHA-256 digest, checked in constant time.

A key reads `cspk_<key id>_<secret>`: the prefix makes a leaked key recognisable (secret
scanners, log reviews), the key id names it in logs and in `csp apikey list|revoke` without
revealing it, and the secret is 256 random bits. With that much entropy a plain SHA-256 of the
whole key cannot be reversed or guessed from a leaked table, so no salt or server-side pepper
(which would have to be kept and rotated) is needed; the digest is compared with
`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import SecretStr
from sqlalchemy import select, update

from csp_core.registry.errors import ApiKeyRefused, UnknownApiKey
from csp_core.registry.store import Record, Store
from csp_core.registry.tables import ApiKey, utcnow

API_KEY_PREFIX = "cspk_"
_KEY_ID_LENGTH = 16  # base32 of 10 random bytes: a-z and 2-7
_KEY = re.compile(r"^cspk_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$")
_KEY_ID = re.compile(r"^[a-z2-7]{16}$")
# Compared against when the key id is unknown, so every refusal costs one comparison.
_NO_KEY_HASH = hashlib.sha256(b"no such key").hexdigest()


class ApiKeyScope(StrEnum):
    RESELLER = "reseller"  # acts for one reseller: its orders, licenses and subscriptions only
    OPS = "ops"  # the marketplace's own systems and operators: everything


class ApiKeyRecord(Record):
    key_id: str
    scope: ApiKeyScope
    reseller_id: str | None
    label: str | None
    rate_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def caller(self) -> str:
        """Who the key acts for, for people and logs: `reseller RSL-042` or `ops`."""
        return f"reseller {self.reseller_id}" if self.reseller_id else "ops"


class NewApiKey(Record):
    """A key just made: the record, and the key itself (shown once, never stored)."""

    record: ApiKeyRecord
    key: SecretStr


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_id(presented: str) -> str | None:
    """The key id of a well-formed key (safe to log), else None."""
    match = _KEY.match(presented)
    return match.group(1) if match else None


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.match(value))


def _new_key() -> tuple[str, str]:
    key_id = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    assert len(key_id) == _KEY_ID_LENGTH
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class ApiKeyStore(Store):
    """The API keys aggregate."""

    def create_api_key(
        self,
        scope: ApiKeyScope | str,
        reseller_id: str | None = None,
        label: str | None = None,
        rate_per_minute: int | None = None,
    ) -> NewApiKey:
        scope = ApiKeyScope(scope)
        if (scope is ApiKeyScope.RESELLER) != (reseller_id is not None):
            raise ValueError("a reseller key names its reseller; an ops key names none")
        if rate_per_minute is not None and rate_per_minute < 1:
            raise ValueError(f"rate_per_minute must be at least 1 (got {rate_per_minute})")
        key_id, key = _new_key()
        row = ApiKey(
            key_id=key_id,
            key_hash=api_key_digest(key),
            scope=scope.value,
            reseller_id=reseller_id,
            label=label,
            rate_per_minute=rate_per_minute,
            created_at=utcnow(),
            revoked_at=None,
        )
        with self._tx(write=True) as session:
            session.add(row)
            session.flush()
            return NewApiKey(record=ApiKeyRecord.model_validate(row), key=SecretStr(key))

    def authenticate_api_key(self, presented: str) -> ApiKeyRecord:
        """The record of an active key that matches exactly; ApiKeyRefused otherwise."""
        key_id = api_key_id(presented)
        if key_id is None:
            raise ApiKeyRefused("malformed")
        with self._tx() as session:
            row = session.get(ApiKey, key_id)
            matches = hmac.compare_digest(
                api_key_digest(presented), row.key_hash if row else _NO_KEY_HASH
            )
            if row is None:
                raise ApiKeyRefused("unknown key id", key_id)
            if not matches:
                raise ApiKeyRefused("wrong secret", key_id)
            if row.revoked_at is not None:
                raise ApiKeyRefused("revoked", key_id)
            return ApiKeyRecord.model_validate(row)

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._tx() as session:
            row = session.get(ApiKey, key_id)
            return ApiKeyRecord.model_validate(row) if row else None

    def list_api_keys(self, include_revoked: bool = False) -> list[ApiKeyRecord]:
        stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)
        if not include_revoked:
            stmt = stmt.where(ApiKey.revoked_at.is_(None))
        with self._tx() as session:
            return [ApiKeyRecord.model_validate(row) for row in session.scalars(stmt)]

    def revoke_api_key(self, key_id: str) -> tuple[ApiKeyRecord, bool]:
        """Revoke a key for good. Returns (record, revoked now); revoking again changes nothing."""
        with self._tx(write=True) as session:
            won = session.execute(
                update(ApiKey)
                .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
                .returning(ApiKey.key_id),
                execution_options={"synchronize_session": False},
            ).first()
            row = session.get(ApiKey, key_id)
            if row is None:
                raise UnknownApiKey(f"no API key {key_id} (see `csp apikey list --all`)")
            session.refresh(row)
            return ApiKeyRecord.model_validate(row), won is not None
