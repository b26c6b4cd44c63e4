"""Registry errors. Messages name the business objects involved, never secrets."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

# The database cannot be reached or answered with a server failure: worth retrying later.
REGISTRY_OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class RegistryError(Exception):
    """Base class of the registry's business errors."""


class OrderConflict(RegistryError):
    """The order id is already recorded with different content (another fingerprint)."""


class UnknownOrder(RegistryError, LookupError):
    pass


class TenantConflict(RegistryError):
    """The domain is bound to another tenant id (or the tenant id to another domain)."""


class UnknownTenant(RegistryError, LookupError):
    pass


class LicenseTransferRefused(RegistryError):
    """A license (subscription) is bound to its tenant forever."""

    def __init__(self, subscription_id: str, current_domain: str | None, new_domain: str) -> None:
        where = f"tenant {current_domain}" if current_domain else "its tenant"
        super().__init__(
            f"subscription {subscription_id} cannot move to tenant {new_domain}: a license is "
            f"bound to {where} forever. To use it in {new_domain}, buy a new subscription in "
            f"that tenant (and cancel or let the old one expire within its own terms)."
        )
        self.subscription_id = subscription_id
        self.current_domain = current_domain
        self.new_domain = new_domain


class UnknownSubscription(RegistryError, LookupError):
    pass


class UnknownCharge(RegistryError, LookupError):
    pass


class ChargeAlreadyPaid(RegistryError):
    """A second, different payment for a charge that is already paid."""


class CredentialsNotFound(RegistryError, LookupError):
    pass


class CredentialsAlreadyRevealed(RegistryError):
    """Credentials are shown once; after that they are refused (the admin must reset them)."""


class UnknownApiKey(RegistryError, LookupError):
    pass


class ApiKeyRefused(RegistryError):
    """A presented API key does not authenticate. `reason` is for the log (malformed, unknown,
    revoked, wrong secret); the caller is told only that the key was not accepted. The message
    and attributes never hold the key itself."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(f"API key refused: {reason}" + (f" (key id {key_id})" if key_id else ""))
        self.reason = reason
        self.key_id = key_id
