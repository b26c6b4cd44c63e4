"""The CLI for order systems and ops (`csp`, or `python starter.py`), one module per
capability over the client functions in `api/`: orders.py (order, licenses, credentials),
renewals.py (renewals, payment), subscriptions.py (subscription, subscriptions), ops.py
(ops tasks, notices, codec), apikeys.py (HTTP API keys); common.py holds the exit codes and
what every command shares.

Input is validated before anything starts; exit codes: 0 ok (also: an order already processed,
answered from the registry), 2 invalid input, 3 refused, 4 not found, 5 Temporal unreachable.
"""

from __future__ import annotations

import typer

from cli.apikeys import apikey_app
from cli.ops import codec_app, notices_app, ops_app
from cli.orders import credentials_app, licenses_app, order_app
from cli.renewals import payment_app, renewals_app
from cli.subscriptions import subscription_app, subscriptions_app

app = typer.Typer(
    help="csp-orchestrator: Microsoft CSP orders, subscriptions and renewals.",
    no_args_is_help=True,
)
app.add_typer(order_app, name="order")
app.add_typer(licenses_app, name="licenses")
app.add_typer(credentials_app, name="credentials")
app.add_typer(subscription_app, name="subscription")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(ops_app, name="ops")
app.add_typer(notices_app, name="notices")
app.add_typer(renewals_app, name="renewals")
app.add_typer(payment_app, name="payment")
app.add_typer(codec_app, name="codec")
app.add_typer(apikey_app, name="apikey")

__all__ = ["app"]
