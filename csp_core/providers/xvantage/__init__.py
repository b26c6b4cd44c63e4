"""Ingram Micro Xvantage Integration (XI) adapter implementing the provider port.

Transport: an async httpx client of our own, with requests built as, and answers parsed by,
the pydantic models of Ingram's SDK (`xi-sdk-resellers`, module `xi.sdk.resellers`). The SDK's
own ApiClient is synchronous urllib3: in an async worker every call would hold a thread (and a
pool per thread) for the whole round trip, and its token call is a GET with the client secret
in the query string (as the spec has it), where proxies and access logs keep URLs. So the SDK
is the contract (models, field names, limits such as IM-CorrelationID <= 32 characters) and
httpx is the wire. The token is fetched with a POST form (RFC 6749), cached, renewed a minute
before it expires, and renewed once more on a 401 in mid-run.

How the port maps onto XI, which has no customer resource (Ingram creates or uses the
Microsoft tenant named by an order's vendor fields):
- A tenant is known to Ingram by its onmicrosoft domain, so that is this adapter's tenant id.
  Every order we place carries `endCustomerOrderNumber` = `tenant_key(domain)`, so our orders
  for a tenant are found with the order search (XI has no other index by tenant).
- create_customer sends nothing: the tenant is created by the first order
  (`tenant_preference=new`, with the client's address and MCA acceptance) and Microsoft /
  Ingram hand the admin credentials to the client's contact; it answers no password.
- find_customer_by_domain: Ingram can order on any existing tenant by domain; it is ours
  (`has_reseller_relationship`) when an order of ours on it went through. XI cannot tell
  whether a client accepted us meanwhile: that takes ops' confirmation (partner_accepted).
- domain_available: XI has no domain check; Ingram refuses a taken domain when it processes
  the order (the order then fails as a business refusal).
- place_order: vendorrequiredinfo (the Microsoft NCE fields Ingram asks for), then the
  asynchronous v7 order (a confirmation number), then the order search and order details
  until the subscriptions exist; meanwhile it raises a transient OrderInProgress, so the
  activity's retries poll. The v7 request's IM-CorrelationID and customerOrderNumber derive
  from the port's request_id: a retry is recognisable, and finds its order instead of placing
  another.
- get_order, subscription_provisioning, get_subscription, list_subscriptions: order details
  (serviceContractInfo).
- No XI endpoint changes a subscription's status or seats, cancels it or turns auto-renew off:
  those raise ProviderNotOffered (ops do them in Ingram's marketplace, and confirm them to the
  workflow that asked: workflows/ops_task.py).

Modules: ids.py (PO numbers, tenant keys, IM-CorrelationID, the invitation link), auth.py (the
token), errors.py (reading Ingram's answers), wire.py (httpx, headers, retries on a refused
token), orders.py (the SDK's order models both ways), client.py (the port).
"""

from csp_core.providers.xvantage.client import PROVIDER_NAME, XvantageClient
from csp_core.providers.xvantage.ids import (
    correlation_id,
    customer_order_number,
    invitation_link,
    tenant_key,
)
from csp_core.providers.xvantage.orders import OrderInProgress

__all__ = [
    "PROVIDER_NAME",
    "OrderInProgress",
    "XvantageClient",
    "correlation_id",
    "customer_order_number",
    "invitation_link",
    "tenant_key",
]
