"""Steering subscriptions: where one stands, the changes asked of its SubscriptionWorkflow, the
list ops filter from Temporal visibility, and adopting what the provider already has.

Plain async functions over a Temporal client, for the CLI and an HTTP API. Every change is a
Workflow Update whose id is the caller's request id: asked again with the same id, it is
answered as the first time and nothing is done twice. The workflow's validator refuses what
New Commerce does not allow, with the reason and the way out, before anything runs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from csp_core.orders.models import (
    CENT,
    MAX_AMOUNT,
    RESELLER_ID_PATTERN,
    RESELLER_ID_RULE,
    SKU_PATTERN,
    tenant_domain,
)
from csp_core.registry import Registry
from csp_core.settings import Settings
from csp_core.stages import SubscriptionStatus
from csp_core.subscriptions.adoption import (
    AdoptionReport,
    AdoptionRequest,
    adoption_workflow_id,
    product_sku,
    unknown_tenant,
)
from csp_core.subscriptions.values import SubscriptionDetails, subscription_workflow_id
from temporalutil import search_attributes as sa
from workflows.adoption import SubscriptionAdoptionWorkflow
from workflows.subscription import SubscriptionWorkflow

# Request ids become update ids, provider request ids and the seat-change ledger's change id
# (200 characters): printable, no spaces, so they survive shells, logs and URLs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$")
# Partner Center subscription ids are GUIDs; other providers' ids are kept to the same safe
# alphabet (the registry holds 128 characters).
_SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RESELLER_ID = re.compile(RESELLER_ID_PATTERN)
_SKU = re.compile(SKU_PATTERN)
# Tenants adopted at once by `adopt_all` (each its own short workflow).
ADOPT_CONCURRENCY = 4
ADOPT_HINT = "a subscription bought before this system is brought in with `csp subscriptions adopt`"


class SubscriptionInputError(ValueError):
    """Bad input, found before anything is asked: names the field and the rule."""


class SubscriptionRefused(Exception):
    """The change cannot be made; the message says why and what to do instead. `code` is the
    workflow's error type when it refused (ChangeWindowClosed, LicenseTransferRefused, ...)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SubscriptionNotFound(SubscriptionRefused):
    """No workflow manages this subscription (unknown id, or not adopted yet)."""


# ------------------------------------------------------------------ input
def check_subscription_id(value: str, field: str = "SUBSCRIPTION_ID") -> str:
    if not _SUBSCRIPTION_ID.match(value):
        raise SubscriptionInputError(
            f"{field}: must be the provider's subscription id, 1-128 letters, digits, "
            f"'.', '_', ':' or '-' (got {value!r})"
        )
    return value


def check_request_id(value: str, field: str = "--request-id") -> str:
    if not _REQUEST_ID.match(value):
        raise SubscriptionInputError(
            f"{field}: must be 1-200 letters, digits or . _ : @ + = -, starting with a "
            f"letter or digit (got {value!r})"
        )
    return value


def check_seats_to_add(seats: int, field: str = "--add", total: str = "--quantity") -> int:
    if seats < 1:
        raise SubscriptionInputError(
            f"{field}: seats to add, a whole number of at least 1 (got {seats}); "
            f"to remove seats give the new total with {total}"
        )
    return seats


def new_request_id() -> str:
    """A request id for a caller that gave none (printed, so the caller can repeat it)."""
    return str(uuid.uuid4())


def check_domain(value: str, option: str = "--domain") -> str:
    try:
        return tenant_domain(value)
    except ValueError as err:
        raise SubscriptionInputError(f"{option}: {err} (got {value!r})") from None


def check_reseller_id(value: str, field: str = "--reseller") -> str:
    if not _RESELLER_ID.match(value):
        raise SubscriptionInputError(f"{field}: {RESELLER_ID_RULE} (got {value!r})")
    return value


def parse_price(value: str) -> tuple[str, Decimal]:
    """`--price PRODUCT:SKU=MXN` -> (PRODUCT:SKU, amount)."""
    sku, sep, raw = value.partition("=")
    sku, raw = sku.strip().upper(), raw.strip()
    if not sep or not _SKU.match(sku):
        raise SubscriptionInputError(
            f"--price: must be PRODUCT:SKU=MXN, e.g. CFQ7TTC0LH18:0001=129.00 (got {value!r})"
        )
    try:
        amount: Decimal | None = Decimal(raw)
    except InvalidOperation:
        amount = None
    if (
        amount is None
        or not amount.is_finite()
        or not 0 < amount <= MAX_AMOUNT
        or amount != amount.quantize(CENT)
    ):
        raise SubscriptionInputError(
            f"--price: the unit price of {sku} must be an amount in MXN greater than 0 and at "
            f"most {MAX_AMOUNT:,}, with at most 2 decimal places (got {raw!r})"
        )
    return product_sku(sku), amount.quantize(CENT)


# ------------------------------------------------------------------ reads
def subscription_handle(client: Client, subscription_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(
        SubscriptionWorkflow.run, subscription_workflow_id(subscription_id)
    )


def not_found(client: Client, subscription_id: str) -> SubscriptionNotFound:
    """The answer for a subscription no workflow manages (also what another reseller's
    subscription looks like to a reseller: the same words)."""
    return SubscriptionNotFound(
        f"subscription {subscription_id} not found: no workflow "
        f"{subscription_workflow_id(subscription_id)} in namespace {client.namespace} "
        f"(check the subscription id; {ADOPT_HINT})"
    )


async def subscription_details(client: Client, subscription_id: str) -> SubscriptionDetails:
    """Where the subscription stands: its workflow's answer, or its final details once the
    workflow has ended (cancelled, expired)."""
    handle = subscription_handle(client, subscription_id)
    try:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return await handle.result()
        return await handle.query(SubscriptionWorkflow.details)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found(client, subscription_id) from err
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise  # Temporal itself is unreachable: not a fact about the subscription
        raise SubscriptionRefused(f"subscription {subscription_id}: {err.message}") from err


async def subscription_reseller(client: Client, subscription_id: str) -> str:
    """Whose subscription it is (the reseller its workflow acts for), without asking a worker:
    from its workflow's search attributes. SubscriptionNotFound when no workflow manages it."""
    handle = subscription_handle(client, subscription_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found(client, subscription_id) from err
        raise
    reseller = description.typed_search_attributes.get(sa.RESELLER_ID)
    if reseller is None:  # not set at start: ask the workflow itself
        reseller = (await subscription_details(client, subscription_id)).reseller_id
    return reseller


# ------------------------------------------------------------------ changes
async def add_seats(
    client: Client, subscription_id: str, seats: int, request_id: str
) -> SubscriptionDetails:
    """Add seats (any time while active)."""
    return await _change(
        client, subscription_id, SubscriptionWorkflow.add_seats, [seats], request_id
    )


async def set_seats(
    client: Client, subscription_id: str, quantity: int, request_id: str
) -> SubscriptionDetails:
    """Set the total seats: fewer only inside the 168 h window, never below one."""
    return await _change(
        client, subscription_id, SubscriptionWorkflow.set_seats, [quantity], request_id
    )


async def cancel(client: Client, subscription_id: str, request_id: str) -> SubscriptionDetails:
    """Cancel inside the 168 h window (refused after it, with the way out)."""
    return await _change(client, subscription_id, SubscriptionWorkflow.cancel, [], request_id)


async def set_auto_renew(
    client: Client, subscription_id: str, enabled: bool, request_id: str
) -> SubscriptionDetails:
    return await _change(
        client, subscription_id, SubscriptionWorkflow.set_auto_renew, [enabled], request_id
    )


async def transfer(
    client: Client, subscription_id: str, to_domain: str, request_id: str
) -> SubscriptionDetails:
    """Always refused (a license never leaves its tenant); the refusal names the way out."""
    return await _change(
        client, subscription_id, SubscriptionWorkflow.transfer, [to_domain], request_id
    )


async def _change(
    client: Client, subscription_id: str, update: Any, args: Sequence[Any], request_id: str
) -> SubscriptionDetails:
    handle = subscription_handle(client, subscription_id)
    try:
        return await handle.execute_update(update, args=list(args), id=request_id)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise SubscriptionRefused(cause.message, cause.type) from err
        raise SubscriptionRefused(str(cause or err)) from err
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        if err.status != RPCStatusCode.NOT_FOUND:
            raise SubscriptionRefused(f"subscription {subscription_id}: {err.message}") from err
    # No running workflow: it has ended (its status is in its search attributes) or never was.
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found(client, subscription_id) from err
        raise
    status = description.typed_search_attributes.get(sa.SUBSCRIPTION_STATUS) or "closed"
    raise SubscriptionRefused(
        f"subscription {subscription_id} is {status} and its workflow has ended: nothing about "
        "it can change any more; buy a new subscription with `csp order submit` if the client "
        "needs licenses again"
    )


# ------------------------------------------------------------------ the list
class SubscriptionRow(BaseModel):
    """A subscription as visibility shows it (its workflow's search attributes)."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    domain: str | None
    reseller_id: str | None
    status: str | None
    seats: int | None
    auto_renew: bool | None
    cancellable_until: datetime | None
    term_ends_on: str | None
    # RUNNING while the subscription lives; COMPLETED once cancelled or expired.
    workflow_status: str | None


def list_query(
    domain: str | None = None,
    reseller_id: str | None = None,
    status: SubscriptionStatus | None = None,
) -> str:
    """The visibility query (the same one ops can paste into the Web UI or `temporal workflow
    list --query`). Values are checked first, so none can break out of its quotes."""
    clauses = [
        "WorkflowType = 'SubscriptionWorkflow'",
        # Each continue-as-new leaves a closed run behind: list the subscription once.
        "ExecutionStatus != 'ContinuedAsNew'",
    ]
    if domain is not None:
        clauses.append(f"{sa.CUSTOMER_DOMAIN.name} = '{check_domain(domain)}'")
    if reseller_id is not None:
        clauses.append(f"{sa.RESELLER_ID.name} = '{check_reseller_id(reseller_id)}'")
    if status is not None:
        clauses.append(f"{sa.SUBSCRIPTION_STATUS.name} = '{SubscriptionStatus(status).value}'")
    return " AND ".join(clauses)


async def list_subscriptions(
    client: Client,
    *,
    domain: str | None = None,
    reseller_id: str | None = None,
    status: SubscriptionStatus | None = None,
    limit: int | None = None,
) -> list[SubscriptionRow]:
    """Subscriptions by tenant, reseller or status, from Temporal visibility, by domain."""
    query = list_query(domain, reseller_id, status)
    rows = [_row(execution) async for execution in client.list_workflows(query, limit=limit)]
    return sorted(rows, key=lambda row: (row.domain or "", row.subscription_id))


def _row(execution: WorkflowExecution) -> SubscriptionRow:
    found = execution.typed_search_attributes
    return SubscriptionRow(
        subscription_id=found.get(sa.SUBSCRIPTION_ID)
        or execution.id.removeprefix(subscription_workflow_id("")),
        domain=found.get(sa.CUSTOMER_DOMAIN),
        reseller_id=found.get(sa.RESELLER_ID),
        status=found.get(sa.SUBSCRIPTION_STATUS),
        seats=found.get(sa.SEATS),
        auto_renew=found.get(sa.AUTO_RENEW),
        cancellable_until=found.get(sa.CANCELLABLE_UNTIL),
        term_ends_on=found.get(sa.TERM_ENDS_ON),
        workflow_status=execution.status.name if execution.status else None,
    )


# ------------------------------------------------------------------ adoption
async def adopt(
    client: Client,
    registry: Registry,
    domain: str,
    settings: Settings,
    prices: dict[str, Decimal] | None = None,
) -> AdoptionReport:
    """Bring the tenant's existing subscriptions at the provider under a SubscriptionWorkflow
    each, with their real purchase dates (the worker lists them: it holds the provider's
    credentials). Safe to repeat; a second adoption of the same tenant while one runs joins it.
    A tenant the registry does not know is refused with the way to bring it in."""
    domain = check_domain(domain)
    if await asyncio.to_thread(registry.get_tenant, domain) is None:
        raise SubscriptionRefused(unknown_tenant(domain))
    handle = await client.start_workflow(
        SubscriptionAdoptionWorkflow.run,
        AdoptionRequest(domain=domain, prices=prices or {}),
        id=adoption_workflow_id(domain),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"Adopt the existing subscriptions of {domain}",
    )
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ActivityError) and cause.cause is not None:
            cause = cause.cause  # the activity's own reason (unknown tenant, provider refusal)
        reason = cause.message if isinstance(cause, FailureError) else str(err)
        raise SubscriptionRefused(f"adopting {domain}: {reason}") from err


async def adopt_all(
    client: Client,
    registry: Registry,
    settings: Settings,
    prices: dict[str, Decimal] | None = None,
) -> list[AdoptionReport | SubscriptionRefused]:
    """Adopt on every tenant the registry knows; one tenant's failure does not stop the others."""
    tenants = await asyncio.to_thread(registry.list_tenants)
    gate = asyncio.Semaphore(ADOPT_CONCURRENCY)

    async def one(domain: str) -> AdoptionReport | SubscriptionRefused:
        async with gate:
            try:
                return await adopt(client, registry, domain, settings, prices)
            except SubscriptionRefused as err:
                return err

    return list(await asyncio.gather(*(one(t.domain) for t in tenants)))
