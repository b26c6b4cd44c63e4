"""Activities of the renewal workflows: registry bookkeeping, provider suspension and
reactivation, e-mails, and the fan-out that starts one payment workflow per open charge."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.common import (
    in_thread,
    ledger_call,
    provider_failure,
    request_id,
    send_once,
)
from activities.renewal_pages import bill_page, charge_failure, open_page
from activities.renewal_payments import look_up_then_claim, payment_seen
from csp_core.notifications import messages
from csp_core.notifications.mailer import Mailer
from csp_core.providers.port import Provider, ProviderError, SubscriptionStatus
from csp_core.registry import Registry
from csp_core.registry.errors import UnknownSubscription
from csp_core.renewals.billing import (
    REACTIVATION_RETRY_EVERY,
    RenewalPolicy,
    StepKind,
    cutoff_at,
    period_start,
)
from csp_core.renewals.values import (
    ChargeFailure,
    CyclePage,
    NoticeKind,
    PaymentSeen,
    PreparedCharges,
    RenewalCharge,
    RenewalNotice,
    RenewalRequest,
    renewal_workflow_id,
)
from csp_core.stages import PaymentStatus
from csp_core.subscriptions.values import (
    REACTIVATED_SIGNAL,
    SUSPENDED_SIGNAL,
    PaymentHold,
    subscription_workflow_id,
)
from csp_core.timezones import zone
from temporalutil import search_attributes as sa

log = structlog.get_logger(__name__)
START_CONCURRENCY = 32


@dataclass
class RenewalActivities:
    registry: Registry
    provider: Provider
    mailer: Mailer
    client: Client
    task_queue: str
    ops_email: str

    # ------------------------------------------------------------------ the cycle
    @activity.defn
    async def prepare_charges(self, period: str, policy: RenewalPolicy) -> int:
        """Deprecated: kept for cycles started before `prepare_period_charges` (patch
        `cycle-reports-bad-charges`); it skips bad charges too, without naming them."""
        return (await self.prepare_period_charges(period, policy)).recorded

    @activity.defn
    async def prepare_period_charges(self, period: str, policy: RenewalPolicy) -> PreparedCharges:
        """Record the period's charge for every subscription that owes one (idempotent).

        Only active and suspended subscriptions are listed: a cancelled or expired one owes no
        later charge. A charge is the seats in force when the period starts × unit price plus
        the prorations of earlier seat changes no charge billed yet (Registry.bill_period).
        A subscription whose charge cannot be recorded (its amount does not fit, its data is
        refused) is skipped and reported; the database being unreachable fails the activity,
        which Temporal retries."""
        due_at = cutoff_at(period, policy)
        starts_at = period_start(period, policy.timezone)
        after, recorded, failed = "", 0, []
        while True:
            subs = await in_thread(
                self.registry.list_subscriptions, {"active", "suspended"}, after, 500
            )
            if not subs:
                return PreparedCharges(recorded=recorded, failed=failed)
            # The whole page in one trip to a thread (one transaction per charge, as before).
            billed, bad = await in_thread(
                bill_page, self.registry, subs, period, policy, starts_at, due_at
            )
            recorded += billed
            failed.extend(bad)
            after = subs[-1].subscription_id
            activity.heartbeat(after)

    @activity.defn
    async def start_renewals_page(
        self, period: str, policy: RenewalPolicy, after_id: int, limit: int
    ) -> CyclePage:
        """Start the payment workflow of each open charge after `after_id`; an existing one
        (running, or already closed for this period) is left alone. A charge whose data is
        broken is reported in the page and the others are started."""
        charges, contexts = await in_thread(open_page, self.registry, period, after_id, limit)
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def start(subscription_id: str, amount: object) -> bool | ChargeFailure:
            try:
                context = contexts.get(subscription_id)
                if context is None:
                    raise UnknownSubscription(f"subscription {subscription_id} is not recorded")
                if isinstance(context, Exception):
                    raise context
                charge = RenewalCharge(
                    subscription_id=subscription_id,
                    period=period,
                    amount=amount,  # type: ignore[arg-type]
                    tenant_id=context.tenant_id,
                    domain=context.domain,
                    company_name=context.company_name,
                    reseller_id=context.reseller_id,
                    reseller_name=context.reseller_name,
                    reseller_email=context.reseller_email or self.ops_email,
                    product_name=context.product_name,
                    quantity=context.quantity,
                    order_id=context.order_id,
                )
            except Exception as err:
                return charge_failure(subscription_id, err)
            async with gate:
                try:
                    await self.client.start_workflow(
                        "RenewalPaymentWorkflow",
                        RenewalRequest(charge=charge, policy=policy),
                        id=renewal_workflow_id(subscription_id, period),
                        task_queue=self.task_queue,
                        # Running or closed already: leave it (and count it as not started).
                        # Begins once the fan-out is done (RenewalPolicy.opening_delay).
                        start_delay=policy.opening_delay or None,
                        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        search_attributes=TypedSearchAttributes(
                            [
                                SearchAttributePair(sa.SUBSCRIPTION_ID, subscription_id),
                                SearchAttributePair(sa.BILLING_PERIOD, period),
                                SearchAttributePair(sa.PAYMENT_STATUS, PaymentStatus.PENDING.value),
                                SearchAttributePair(sa.ESCALATION_LEVEL, 0),
                                SearchAttributePair(sa.PAYMENT_DUE_AT, cutoff_at(period, policy)),
                                SearchAttributePair(sa.CUSTOMER_DOMAIN, context.domain),
                                SearchAttributePair(sa.RESELLER_ID, context.reseller_id),
                            ]
                        ),
                        static_summary=(
                            f"Renewal {period} · {context.domain} · {context.product_name} "
                            f"× {context.quantity} · {amount} MXN"
                        )[:200],
                    )
                    return True
                except WorkflowAlreadyStartedError:
                    return False

        results = await asyncio.gather(*(start(c.subscription_id, c.amount) for c in charges))
        activity.heartbeat(len(results))
        return CyclePage(
            last_id=charges[-1].id if charges else after_id,
            seen=len(charges),
            started=sum(1 for r in results if r is True),
            failed=[r for r in results if isinstance(r, ChargeFailure)],
        )

    # ------------------------------------------------------------------ bookkeeping
    @activity.defn
    async def payment_reference(self, subscription_id: str, period: str) -> str | None:
        """Deprecated: kept for workflows started before `find_payment` (see the patch
        `payment-time-decides-lateness`); remove once none of them runs."""
        seen = await self.find_payment(subscription_id, period)
        return seen.reference if seen is not None else None

    @activity.defn
    async def find_payment(self, subscription_id: str, period: str) -> PaymentSeen | None:
        """The payment the registry shows for the charge, if any: settled, or partly paid
        (then `settled` is False and `amount_paid` says how much so far)."""
        return await in_thread(payment_seen, self.registry, subscription_id, period)

    @activity.defn
    async def record_charge_status(
        self,
        subscription_id: str,
        period: str,
        status: PaymentStatus,
        escalation_level: int | None = None,
    ) -> None:
        await in_thread(
            self.registry.set_charge_status, subscription_id, period, status, escalation_level
        )

    # ------------------------------------------------------------------ provider
    @activity.defn
    async def suspend_subscription(self, charge: RenewalCharge) -> None:
        await self._set_status(charge, SubscriptionStatus.SUSPENDED, "suspended")
        # Suspending turns auto-renew off at the provider; the registry says so too.
        await in_thread(self.registry.set_subscription_auto_renew, charge.subscription_id, False)
        await self._tell_subscription(charge, SUSPENDED_SIGNAL)

    @activity.defn
    async def reactivate_subscription(self, charge: RenewalCharge) -> None:
        await self._set_status(charge, SubscriptionStatus.ACTIVE, "active")
        await self._tell_subscription(charge, REACTIVATED_SIGNAL)

    @activity.defn
    async def record_suspension(self, charge: RenewalCharge) -> str | None:
        """Ops suspended it by hand at the provider (no API for it) and confirmed it: the
        registry and the subscription's workflow follow, as after suspend_subscription.
        Returns what the provider shows when that is not suspended (None when it agrees or
        cannot tell)."""
        view = await self._provider_disagrees(charge, SubscriptionStatus.SUSPENDED)
        await self._record_status(charge, "suspended")
        await in_thread(self.registry.set_subscription_auto_renew, charge.subscription_id, False)
        await self._tell_subscription(charge, SUSPENDED_SIGNAL)
        return view

    @activity.defn
    async def record_reactivation(self, charge: RenewalCharge) -> str | None:
        """Ops reactivated it by hand at the provider and confirmed it: as
        reactivate_subscription, without the provider call."""
        view = await self._provider_disagrees(charge, SubscriptionStatus.ACTIVE)
        await self._record_status(charge, "active")
        await self._tell_subscription(charge, REACTIVATED_SIGNAL)
        return view

    async def _provider_disagrees(
        self, charge: RenewalCharge, expected: SubscriptionStatus
    ) -> str | None:
        """Read the subscription at the provider after ops' confirmation: ops' word stands
        (the provider's view may lag), but a different status is noted for them to check."""
        try:
            found = await self.provider.get_subscription(charge.tenant_id, charge.subscription_id)
        except ProviderError as err:
            log.warning(
                "provider_view_unavailable", subscription_id=charge.subscription_id, error=str(err)
            )
            return None
        if found.status is expected:
            return None
        log.warning(
            "provider_view_differs",
            subscription_id=charge.subscription_id,
            confirmed=expected.value,
            provider=found.status.value,
        )
        return f"the provider still shows it {found.status.value}"

    async def _set_status(
        self, charge: RenewalCharge, status: SubscriptionStatus, registry_status: str
    ) -> None:
        try:
            await self.provider.set_subscription_status(
                charge.tenant_id,
                charge.subscription_id,
                status,
                request_id=request_id(f"subscription-{status.value}"),
            )
        except ProviderError as err:
            raise provider_failure(err, f"setting {charge.subscription_id} {status.value}") from err
        await self._record_status(charge, registry_status)

    async def _record_status(self, charge: RenewalCharge, registry_status: str) -> None:
        # Only between active and suspended: a subscription that expired or was cancelled
        # meanwhile stays so (and owes no more renewal charges).
        await in_thread(
            self.registry.set_subscription_status,
            charge.subscription_id,
            registry_status,
            only_from={"active", "suspended"},
        )

    async def _tell_subscription(self, charge: RenewalCharge, signal: str) -> None:
        """Signal the subscription's workflow (it refuses changes while suspended). From here,
        not from the renewal workflow, so that workflow's history gains no command. A
        subscription without a workflow (bought before subscription workflows, not adopted
        yet) or whose workflow has ended has nobody to tell; that is no failure."""
        handle = self.client.get_workflow_handle(subscription_workflow_id(charge.subscription_id))
        try:
            await handle.signal(signal, PaymentHold(period=charge.period))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info(
                "subscription_workflow_not_running",
                subscription_id=charge.subscription_id,
                signal=signal,
            )

    # ------------------------------------------------------------------ e-mail
    @activity.defn
    async def send_opening_notice(self, notice: RenewalNotice) -> PaymentSeen | None:
        """The opening notice, with the payment look-up the workflow no longer makes itself
        (patch `renewal-lean-2`, workflows/renewal.py): a charge settled already is sent no
        notice; one partly paid gets it with what was paid. Returns what the registry showed
        (None: nothing paid), for the workflow to settle or note it. A later attempt (after a
        mail outage) looks again for the workflow, but sends the notice it claimed either way:
        at least once, never left pending in the ledger."""
        charge = notice.charge
        email = self._render(notice)
        # The look-up and the ledger's claim in one trip to a thread (no claim when settled).
        seen, claimed = await ledger_call(
            "claiming",
            notice.key,
            look_up_then_claim,
            self.registry,
            email,
            charge,
            first_attempt=activity.info().attempt == 1,
        )
        if claimed is None:
            return seen
        if seen is not None and seen.amount_paid:
            # Partly paid: the same notice (key, kind, recipients) showing what was paid.
            paid = max(notice.amount_paid, seen.amount_paid)
            email = self._render(notice.model_copy(update={"amount_paid": paid}))
        await send_once(
            self.registry,
            self.mailer,
            email,
            subscription_id=charge.subscription_id,
            period=charge.period,
            claimed=claimed,
        )
        return seen

    @activity.defn
    async def notify_renewal(self, notice: RenewalNotice) -> None:
        email = self._render(notice)
        charge = notice.charge
        await send_once(
            self.registry,
            self.mailer,
            email,
            subscription_id=charge.subscription_id,
            period=charge.period,
        )

    def _render(self, notice: RenewalNotice) -> messages.Email:
        c, policy = notice.charge, notice.policy
        kind = notice.kind.value if isinstance(notice.kind, StepKind) else notice.kind
        key = notice.key
        details = messages.RenewalDetails(
            subscription_id=c.subscription_id,
            product_name=c.product_name,
            quantity=c.quantity,
            company_name=c.company_name,
            domain=c.domain,
            reseller_name=c.reseller_name,
            reseller_email=c.reseller_email,
            billing_period=c.period,
            amount=c.amount,
            cutoff=cutoff_at(c.period, policy),
            order_id=c.order_id,
            amount_paid=notice.amount_paid,
        )
        tz = zone(policy.timezone)
        match kind:
            case StepKind.NOTICE:
                return messages.renewal_notice(details, key=key, tz=tz)
            case StepKind.REMINDER:
                return messages.renewal_reminder(details, notice.reminder_number, key=key, tz=tz)
            case StepKind.ESCALATION:
                return messages.renewal_escalation(details, self.ops_email, key=key, tz=tz)
            case StepKind.FINAL_NOTICE:
                return messages.renewal_final_notice(
                    details, key=key, tz=tz, ops_email=self.ops_email
                )
            case StepKind.CUTOFF:
                return messages.renewal_at_risk(
                    details, self.ops_email, policy.cutoff_policy.value, key=key, tz=tz
                )
            case "suspended":
                return messages.renewal_suspended(details, key=key, tz=tz, ops_email=self.ops_email)
            case "reactivated":
                return messages.renewal_reactivated(details, key=key, tz=tz)
            case "paid":
                return messages.payment_received(
                    details, key=key, tz=tz, paid_at=activity.info().current_attempt_scheduled_time
                )
            case NoticeKind.PARTIAL_PAYMENT:
                return messages.renewal_partial_payment(
                    details, notice.payment_amount or Decimal(0), key=key, tz=tz
                )
            case NoticeKind.REACTIVATION_FAILED:
                return messages.renewal_reactivation_failed(
                    details, self.ops_email, key=key, tz=tz, retry_every=REACTIVATION_RETRY_EVERY
                )
            case NoticeKind.REACTIVATION_ABANDONED:
                return messages.renewal_reactivation_failed(
                    details, self.ops_email, key=key, tz=tz, retry_every=None
                )
            case NoticeKind.SUSPENSION_FAILED:
                return messages.renewal_suspension_failed(details, self.ops_email, key=key, tz=tz)
        raise ValueError(f"unknown renewal notice {kind}")
