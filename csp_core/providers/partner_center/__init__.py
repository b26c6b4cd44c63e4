"""Partner Center REST client (v1) implementing the provider port, by concern:

- auth.py: bearer tokens (App+User through MSAL: refresh token → access token, cached and
  renewed; the sandbox's static token);
- transport.py: the wire (headers, MS-RequestId per step, 401 → renew once, errors, logs);
- customers.py: domains, lookup, address validation and creation, the MCA confirmation;
- orders.py: New Commerce catalog availability → cart → checkout (400019, 13605);
- subscriptions.py: reads and If-Match PATCHes (a stale ETag is read again once);
- client.py: PartnerCenterClient, all of them together.
"""

from csp_core.providers.partner_center.auth import (
    PARTNER_CENTER_SCOPE,
    AppUserToken,
    StaticToken,
    TokenSource,
)
from csp_core.providers.partner_center.client import PartnerCenterClient
from csp_core.providers.partner_center.transport import parse_retry_after

# Kept for the Ingram adapter, which reads Retry-After the same way.
_parse_retry_after = parse_retry_after

__all__ = [
    "PARTNER_CENTER_SCOPE",
    "AppUserToken",
    "PartnerCenterClient",
    "StaticToken",
    "TokenSource",
    "parse_retry_after",
]
