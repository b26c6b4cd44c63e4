"""Subscriptions: list, read, and changes (status, seats, cancellation, auto-renew).

Partner Center PATCHes the full resource, with the ETag of the version it was read from in
`If-Match` (attributes.etag of a GET). If the subscription changed in between, Partner Center
answers a stale ETag (412 Precondition Failed; the error list also documents 2055 "Etag is no
longer valid"): the change is read again, applied to what the provider holds then, and sent
once more under a step id of its own (a refused request id is not reused). A change that did
go through and lost its answer is found by the caller's retry: the same MS-RequestId answers
the first response instead of changing twice.
"""

from __future__ import annotations

from typing import Any

from csp_core.providers.partner_center.resources import etag, subscription, subscription_path
from csp_core.providers.partner_center.transport import (
    PartnerCenterTransport,
    log,
    seg,
    sub_request_id,
)
from csp_core.providers.port import ProviderError, ProviderSubscription, SubscriptionStatus

STALE_ETAG_CODE = "2055"


def _stale_etag(err: ProviderError) -> bool:
    return err.status == 412 or err.code == STALE_ETAG_CODE


class SubscriptionsMixin(PartnerCenterTransport):
    async def list_subscriptions(self, tenant_id: str) -> list[ProviderSubscription]:
        data = await self._get_json(f"/v1/customers/{seg(tenant_id)}/subscriptions")
        return [subscription(item) for item in data.get("items") or []]

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> ProviderSubscription:
        return subscription(await self._get_json(subscription_path(tenant_id, subscription_id)))

    async def set_subscription_status(
        self,
        tenant_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        request_id: str,
    ) -> ProviderSubscription:
        changes = {"status": SubscriptionStatus(status).value}
        return await self._patch(tenant_id, subscription_id, changes, request_id=request_id)

    async def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, request_id: str
    ) -> ProviderSubscription:
        changes = {"quantity": quantity}
        return await self._patch(tenant_id, subscription_id, changes, request_id=request_id)

    async def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, request_id: str
    ) -> ProviderSubscription:
        changes = {"status": SubscriptionStatus.DELETED.value}
        return await self._patch(tenant_id, subscription_id, changes, request_id=request_id)

    async def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, request_id: str
    ) -> ProviderSubscription:
        changes = {"autoRenewEnabled": enabled}
        return await self._patch(tenant_id, subscription_id, changes, request_id=request_id)

    async def _patch(
        self,
        tenant_id: str,
        subscription_id: str,
        changes: dict[str, Any],
        *,
        request_id: str,
    ) -> ProviderSubscription:
        try:
            return await self._patch_once(tenant_id, subscription_id, changes, request_id)
        except ProviderError as err:
            if not _stale_etag(err):
                raise
        log.info("partner_center.stale_etag", subscription_id=subscription_id)
        retry_id = sub_request_id(request_id, "etag-reread")
        return await self._patch_once(tenant_id, subscription_id, changes, retry_id)

    async def _patch_once(
        self, tenant_id: str, subscription_id: str, changes: dict[str, Any], request_id: str
    ) -> ProviderSubscription:
        path = subscription_path(tenant_id, subscription_id)
        resource = await self._get_json(path)
        resource.update(changes)
        response = await self._request(
            "PATCH", path, body=resource, request_id=request_id, if_match=etag(resource)
        )
        if response.status_code == 202:
            # Accepted, still being applied: the resource as it stands now.
            return await self.get_subscription(tenant_id, subscription_id)
        return subscription(self._json(response, "PATCH", path))


__all__ = ["STALE_ETAG_CODE", "SubscriptionsMixin"]
