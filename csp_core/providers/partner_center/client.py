"""PartnerCenterClient: the provider port over Partner Center's v1 REST API.

The same client talks to https://api.partnercenter.microsoft.com (App+User tokens through
MSAL) and to the local sandbox (which also accepts its static token), which speaks the same
shapes and refuses what Partner Center refuses.
"""

from __future__ import annotations

import ssl

import httpx
from pydantic import SecretStr

from csp_core.providers.partner_center.auth import StaticToken, TokenSource
from csp_core.providers.partner_center.orders import OrdersMixin
from csp_core.providers.partner_center.subscriptions import SubscriptionsMixin


class PartnerCenterClient(OrdersMixin, SubscriptionsMixin):
    """Async Partner Center v1 client; one pooled httpx.AsyncClient per instance.

    `auth`: a TokenSource (AppUserToken for Partner Center), or the sandbox's static token.
    """

    def __init__(
        self,
        base_url: str,
        auth: TokenSource | SecretStr,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        source = StaticToken(auth) if isinstance(auth, SecretStr) else auth
        super().__init__(base_url, source, timeout=timeout, transport=transport, verify=verify)


__all__ = ["PartnerCenterClient"]
