"""The sandbox's Xvantage face: Ingram Micro's reseller API over the same world.

One state, two faces: an order placed here creates (or uses) the tenant and places the
subscriptions in the same world the Partner Center face shows, so both count the same effects
(`/sandbox/stats` `by_face.xvantage`). What it speaks (the `xi-sdk-resellers` models validate
every request it takes and every answer it gives):

- `POST|GET /oauth/oauth20/token`: client credentials -> a bearer token that expires after
  `token_ttl_seconds` (`POST /sandbox/xvantage/expire-tokens` expires every token now).
- `POST /resellers/v7/vendorrequiredinfo`: the Microsoft NCE fields of each product.
- `POST /resellers/v7/orders`: asynchronous; answers a confirmation number and processes the
  order `order_delay_seconds` later (on the next call after that): a new tenant
  (`tenant_preference=new`) or an existing one, then the subscriptions. A refusal (domain
  taken, unknown tenant, no relationship when enforced) shows as a Canceled order with the
  reason in its notes. A retry with the same IM-CorrelationID answers the first answer; another
  order with a customerOrderNumber already used is refused (Ingram's default).
- `GET /resellers/v6/orders/search` and `GET /resellers/v6.1/orders/{number}`: our orders,
  their lines and subscriptions (serviceContractInfo).

Auth, faults and latency are applied by the app's gate (sandbox/app.py), as on /v1.

Modules: shapes.py (Ingram's bodies), face.py (tokens, orders and their processing),
views.py (order search and details), routes.py (the HTTP routes and controls).
"""

from sandbox.xvantage.face import XvantageFace
from sandbox.xvantage.routes import router
from sandbox.xvantage.shapes import PREFIXES, TOKEN_PATH, xv_error

__all__ = ["PREFIXES", "TOKEN_PATH", "XvantageFace", "router", "xv_error"]
