"""/sandbox controls of the outgoing events (sandbox/events.py): the client's click on the
invitation, the certificate Partner Center's events are signed with, and provisioning finished
now (what a test or a demo waits for otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from sandbox.events import EventSender
from sandbox.state import SandboxState, iso


def router(state: SandboxState, sender: EventSender) -> APIRouter:
    routes = APIRouter(tags=["sandbox events"])

    @routes.post("/sandbox/customers/{domain}/accept-relationship")
    async def accept_relationship(domain: str) -> dict[str, Any]:
        """The client's Global Admin clicks the invitation: the relationship is accepted (as
        /accept does) and Partner Center's relationship-accepted event goes out."""
        customer = state.accept_relationship(domain)
        sender.relationship_accepted(customer)
        return {
            "customer": customer,
            "event": "queued" if sender.enabled else "not sent: no events URL",
        }

    @routes.get("/sandbox/events/certificate")
    async def certificate() -> Response:
        """The self-signed certificate of the Partner Center events' signatures (PEM)."""
        return Response(sender.signer.pem, media_type="application/x-pem-file")

    @routes.post("/sandbox/provisioning/complete")
    async def complete_provisioning() -> dict[str, int]:
        """Finish every pending provisioning now (instead of after the provisioning delay)."""
        with state.lock:
            now = iso(datetime.now(UTC))
            due = state.world["ready_at"]
            for order_id in due:
                due[order_id] = min(due[order_id], now)
            for tenant_id in list(state.world["orders"]):
                state._refresh(tenant_id)
            state.save()
            return {"orders": len(due)}

    return routes
