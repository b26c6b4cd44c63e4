"""Tenant admin credentials: stored sealed by the vault, revealed exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlalchemy import update

from csp_core.registry.errors import CredentialsAlreadyRevealed, CredentialsNotFound, UnknownOrder
from csp_core.registry.store import Store
from csp_core.registry.tables import Credentials, Order, utcnow

if TYPE_CHECKING:
    from csp_core.secrets import SecretVault


def credentials_ref(order_id: str) -> str:
    """The opaque reference handed around instead of credentials (workflow history, e-mails)."""
    return f"cred-{order_id}"


class CredentialStore(Store):
    """The credentials aggregate."""

    def store_credentials(
        self,
        order_id: str,
        domain: str,
        admin_username: str,
        admin_password: SecretStr,
        vault: SecretVault,
    ) -> str:
        """Store the admin credentials encrypted; returns their reference. The first store wins."""
        return self.store_sealed_credentials(
            order_id, domain, admin_username, vault.encrypt(admin_password)
        )

    def store_sealed_credentials(
        self, order_id: str, domain: str, admin_username: str, ciphertext: str
    ) -> str:
        """Store credentials already sealed by the vault (a Fernet token); the first store wins."""
        stmt = (
            self._insert(Credentials)
            .values(
                order_id=order_id,
                domain=domain.strip().lower(),
                admin_username=admin_username,
                password_ciphertext=ciphertext,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["order_id"])
        )
        with self._tx(write=True) as session:
            if session.get(Order, order_id) is None:
                raise UnknownOrder(f"order {order_id} is not recorded")
            session.execute(stmt)
        return credentials_ref(order_id)

    def credentials_stored(self, order_id: str) -> bool:
        with self._tx() as session:
            return session.get(Credentials, order_id) is not None

    def reveal_credentials(self, order_id: str, vault: SecretVault) -> tuple[str, SecretStr]:
        """Return (username, password) exactly once; later calls raise CredentialsAlreadyRevealed.

        The reveal is marked and the password decrypted in one transaction: if decryption
        fails (wrong key) nothing is consumed.
        """
        now = utcnow()
        with self._tx(write=True) as session:
            result = session.execute(
                update(Credentials)
                .where(Credentials.order_id == order_id, Credentials.revealed_at.is_(None))
                .values(revealed_at=now)
                .returning(Credentials.order_id),
                execution_options={"synchronize_session": False},
            )
            won = result.first() is not None
            row = session.get(Credentials, order_id)
            if row is None:
                raise CredentialsNotFound(f"no credentials are stored for order {order_id}")
            if not won:
                when = row.revealed_at.isoformat() if row.revealed_at else "earlier"
                raise CredentialsAlreadyRevealed(
                    f"the credentials of order {order_id} were already revealed ({when}); "
                    "they are shown only once: reset the admin password in the Microsoft 365 "
                    "admin center if it was lost"
                )
            return row.admin_username, vault.decrypt(row.password_ciphertext)
