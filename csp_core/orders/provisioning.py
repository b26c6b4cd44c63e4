"""Values that travel through the order workflow: its input, the tenant it resolves, and the
status it reports to ops. Plain pydantic; no Temporal import."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from csp_core.orders.acceptance import AcceptancePolicy
from csp_core.orders.failures import OrderFailure
from csp_core.orders.models import Order, TenantMode
from csp_core.stages import OrderStage


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class OrderRequest(_Model):
    """The workflow input: the validated order plus the business policy in force at start."""

    order: Order
    acceptance: AcceptancePolicy = AcceptancePolicy()
    # Placed but not yet provisioned: keep polling, and ask ops to look after this long.
    provisioning_escalation: timedelta = timedelta(hours=72)


class TenantOrigin(StrEnum):
    CREATED = "created"
    LINKED = "linked"


class SealedCredentials(_Model):
    """A created tenant's admin credentials, sealed by the secrets vault (a Fernet token: never
    the password), held only while the registry cannot be reached right after the creation."""

    admin_username: str
    password_ciphertext: str


class TenantRef(_Model):
    domain: str
    tenant_id: str
    origin: TenantOrigin
    # Opaque reference to the vaulted admin credentials (created tenants only): never the secret.
    credentials_ref: str | None = None
    # Set only when the tenant was created but the registry was down: record it, then drop it.
    unrecorded: SealedCredentials | None = None


class DomainCheck(_Model):
    """Result of checking a create-mode domain: ours already, free, or taken by someone else."""

    known_tenant: TenantRef | None = None
    available: bool = False
    # False when the known tenant belongs to other resellers only: this order's reseller needs
    # the client's partner acceptance first.
    reseller_accepted: bool = True


class LinkCheck(_Model):
    """Result of looking up a link-mode tenant at the registry and the provider."""

    tenant: TenantRef | None = None  # set when we may transact on it now
    visible_at_provider: bool = False
    # Ours already, but for other resellers only: wait for this reseller's acceptance.
    other_resellers_tenant: TenantRef | None = None


class PlacedSubscriptions(_Model):
    provider_order_id: str
    subscription_ids: list[str]


class StageRecord(_Model):
    """A stage for the registry, written by the activity that runs next (its first step) rather
    than by a round trip of its own: the workflow's search attribute says it at once."""

    stage: OrderStage
    detail: str


def opening_stage(order: Order) -> StageRecord:
    """An order's first stage: checking a domain to create, or looking up the tenant to link.
    The order system's start sets it as the OrderStage search attribute (api/orders.py)."""
    if order.tenant.mode is TenantMode.CREATE:
        return StageRecord(
            stage=OrderStage.CREATING_TENANT,
            detail=f"Checking that **{order.domain}** is free, then creating the client's tenant.",
        )
    return StageRecord(
        stage=OrderStage.LINKING_TENANT, detail=f"Looking up tenant **{order.domain}**."
    )


class OpenOrder(_Model):
    """Record the order and find its tenant (create mode: is the domain free? link mode: is the
    tenant ours, or has the client accepted us?) in one step.

    When the client must accept us first, the same step records the wait and e-mails the
    invitation (best effort: `OrderOpened.invited` says whether the workflow must still send it).
    """

    order: Order
    record: StageRecord  # CREATING_TENANT or LINKING_TENANT
    waiting: StageRecord  # AWAITING_PARTNER_ACCEPTANCE, recorded only if the client must accept
    deadline: datetime  # the acceptance deadline the invitation names


class OrderOpened(_Model):
    domain_check: DomainCheck | None = None  # create mode
    link_check: LinkCheck | None = None  # link mode
    invited: bool = False  # the client must accept us: wait recorded and invitation e-mailed


class OrderActivated(_Model):
    notified: bool = False  # the ACTIVE e-mail went out; else the workflow sends it


class PlaceOrder(_Model):
    """Place the order on the tenant; `tenant` None: link the tenant the client accepted (as
    ops confirmed) first, giving up at `link_by` if the provider still does not show it. Then one
    look at provisioning: if the provider provisioned it at once, the order is activated in the
    same step (`OrderPlaced.activated`)."""

    order: Order
    tenant: TenantRef | None
    record: StageRecord  # PLACING_ORDER
    link_by: datetime | None = None


class OrderPlaced(_Model):
    tenant: TenantRef
    placed: PlacedSubscriptions
    # Provisioned at once and activated by the place step; None: the activation step follows
    # (and always for places recorded before the step tried, so their replays take that path).
    activated: OrderActivated | None = None


class ActivateOrder(_Model):
    """Once provisioned: record the licenses, start their SubscriptionWorkflows, record the order
    ACTIVE and e-mail the reseller (best effort: `OrderActivated.notified`)."""

    order: Order
    tenant: TenantRef
    placed: PlacedSubscriptions
    record: StageRecord  # ACTIVE


def active_detail(domain: str, placed: PlacedSubscriptions) -> str:
    return f"Active on **{domain}**: {len(placed.subscription_ids)} subscription(s)."


def activating_detail(placed: PlacedSubscriptions) -> str:
    return (
        f"Provider order `{placed.provider_order_id}` placed; waiting for "
        f"{len(placed.subscription_ids)} subscription(s) to be provisioned."
    )


class OrderNoticeKind(StrEnum):
    INVITATION = "invitation"
    ACCEPTANCE_REMINDER = "acceptance_reminder"
    EXPIRED = "expired"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    FAILED = "failed"


class OrderNotice(_Model):
    """An e-mail the order workflow asks for; the activity renders it in es-MX and sends it once."""

    kind: OrderNoticeKind
    order: Order
    reminder_number: int | None = None
    deadline: datetime | None = None
    reason: str | None = None  # CANCELLED: the cancel reason as given
    failure: OrderFailure | None = None  # FAILED: why (rendered in Spanish per failure code)
    tenant_created: bool = False

    @property
    def key(self) -> str:
        """The notice's idempotency key in the e-mail ledger (and its Message-ID's seed)."""
        key = f"order-{self.order.order_id}:{self.kind.value}"
        if self.reminder_number is not None:
            key += f":{self.reminder_number}"
        return key


class OrderStatus(_Model):
    """What the `status` query returns."""

    order_id: str
    stage: OrderStage
    domain: str
    reseller_id: str
    tenant_id: str | None = None
    waiting_since: datetime | None = None
    acceptance_deadline: datetime | None = None
    reminders_sent: int = 0
    provider_order_id: str | None = None
    subscription_ids: list[str] = []
    detail: str = ""
    cancel_reason: str | None = None
    cancel_refused: str | None = None
