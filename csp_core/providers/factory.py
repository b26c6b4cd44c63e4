"""The provider adapter PROVIDER selects, built from validated settings.

`sandbox` and `partner_center` speak Partner Center's REST shape: the sandbox's own face with
its static token, or the real API with App+User tokens (MSAL). `ingram` speaks Ingram Micro's
Xvantage API (the real one, or the sandbox's Xvantage face when PROVIDER_BASE_URL points at
it, as `make run` does).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

from csp_core.providers.partner_center import AppUserToken, PartnerCenterClient, TokenSource
from csp_core.providers.partner_center.transport import tls_verify
from csp_core.providers.port import Provider
from csp_core.providers.xvantage import XvantageClient
from csp_core.settings import ProviderKind, Settings


class ClosableProvider(Provider, Protocol):
    async def aclose(self) -> None: ...


def build_provider(settings: Settings) -> PartnerCenterClient | XvantageClient:
    """Settings validation guarantees what each adapter needs is set (see Settings)."""
    if settings.provider is ProviderKind.INGRAM:
        assert settings.ingram_client_id and settings.ingram_client_secret
        assert settings.ingram_customer_number
        return XvantageClient(
            settings.provider_url,
            client_id=settings.ingram_client_id,
            client_secret=settings.ingram_client_secret,
            customer_number=settings.ingram_customer_number,
            country_code=settings.ingram_country_code,
            sender_id=settings.ingram_sender_id,
            partner_tenant_id=settings.partner_tenant_id,
            partner_mpn_id=settings.partner_mpn_id,
            ingram_tenant_id=settings.ingram_tenant_id,
            timeout=settings.provider_timeout_seconds,
        )
    ca_bundle = str(settings.provider_ca_bundle) if settings.provider_ca_bundle else None
    auth: TokenSource | SecretStr
    if settings.provider is ProviderKind.PARTNER_CENTER:
        assert settings.partner_center_client_id and settings.partner_center_authority
        assert settings.partner_center_client_secret and settings.partner_center_refresh_token
        auth = AppUserToken(
            authority=settings.partner_center_authority,
            client_id=settings.partner_center_client_id,
            client_secret=settings.partner_center_client_secret,
            refresh_token=settings.partner_center_refresh_token,
            # MSAL asks Azure AD whether an authority host is a valid instance; the sandbox's
            # local authority is not one (production refuses a local authority).
            validate_authority=not settings.authority_is_local,
            verify=ca_bundle or True,
            timeout=settings.provider_timeout_seconds,
        )
    else:
        assert settings.provider_api_key is not None
        auth = settings.provider_api_key  # the sandbox's static token
    return PartnerCenterClient(
        settings.provider_url,
        auth,
        timeout=settings.provider_timeout_seconds,
        verify=tls_verify(ca_bundle),
    )


__all__ = ["ClosableProvider", "build_provider"]
