"""The provider adapter PROVIDER selects, built from validated settings.

`sandbox` and `partner_center` speak Partner Center's REST shape (the sandbox's own face, or
the real API); `ingram` speaks Ingram Micro's Xvantage API (the real one, or the sandbox's
Xvantage face when PROVIDER_BASE_URL points at it, as `make run` does).
"""

from __future__ import annotations

from typing import Protocol

from csp_core.providers.partner_center import PartnerCenterClient
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
    assert settings.provider_api_key is not None
    return PartnerCenterClient(
        settings.provider_url,
        settings.provider_api_key,
        timeout=settings.provider_timeout_seconds,
    )


__all__ = ["ClosableProvider", "build_provider"]
