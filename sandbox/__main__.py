"""`python -m sandbox`: run the provider sandbox (Partner Center and Xvantage faces) in the
foreground (dev stack)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import structlog
import uvicorn

from sandbox.app import create_app
from sandbox.state import FaultProfile, FaultSpecError
from sandbox.tls import self_signed

log = structlog.get_logger("sandbox")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="JSON file to load the world from and persist it to (omit: in memory only)",
    )
    parser.add_argument(
        "--provisioning-delay",
        type=float,
        default=0.0,
        help="seconds before new subscriptions become active",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SANDBOX_TOKEN", "sandbox-token"),
        help="bearer token clients must send (default: $SANDBOX_TOKEN or sandbox-token)",
    )
    parser.add_argument(
        "--enforce-relationship",
        action="store_true",
        help="refuse orders (20002) on tenants whose client has not accepted us as partner",
    )
    parser.add_argument(
        "--faults",
        default=os.environ.get("SANDBOX_FAULTS", ""),
        help="random faults on Partner Center calls, e.g. error_rate=0.2,throttle_rate=0.1,"
        "lost_response_rate=0.05,latency_ms=200 (default: $SANDBOX_FAULTS; none)",
    )
    parser.add_argument(
        "--faults-seed",
        type=int,
        default=None,
        help="seed of the fault RNG, to repeat a run (default: $SANDBOX_FAULTS_SEED; random)",
    )
    parser.add_argument(
        "--xvantage-client-id",
        default=os.environ.get("SANDBOX_XVANTAGE_CLIENT_ID", "sandbox-client"),
        help="Xvantage face: the OAuth client id it accepts (default: "
        "$SANDBOX_XVANTAGE_CLIENT_ID or sandbox-client)",
    )
    parser.add_argument(
        "--xvantage-client-secret",
        default=os.environ.get("SANDBOX_XVANTAGE_CLIENT_SECRET", "sandbox-secret"),
        help="Xvantage face: the client secret it accepts (default: "
        "$SANDBOX_XVANTAGE_CLIENT_SECRET or sandbox-secret)",
    )
    parser.add_argument(
        "--xvantage-order-delay",
        type=float,
        default=float(os.environ.get("SANDBOX_XVANTAGE_ORDER_DELAY", "0") or 0),
        help="Xvantage face: seconds before a v7 order is processed (default: "
        "$SANDBOX_XVANTAGE_ORDER_DELAY or 0)",
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="serve https with a self-signed certificate kept in this directory (its "
        "sandbox-cert.pem is the CA for PROVIDER_CA_BUNDLE): what MSAL needs to sign in at the "
        "sandbox's Azure AD face (PROVIDER=partner_center)",
    )
    for name, default in (
        ("client-id", "sandbox-pc-client"),
        ("client-secret", "sandbox-pc-secret"),
        ("refresh-token", "sandbox-refresh-token"),
    ):
        env = "SANDBOX_PARTNER_CENTER_" + name.upper().replace("-", "_")
        parser.add_argument(
            f"--partner-center-{name}",
            default=os.environ.get(env, default),
            help=f"Azure AD face: the {name.replace('-', ' ')} it accepts (default: ${env} or "
            f"{default})",
        )
    parser.add_argument(
        "--events-url",
        default=os.environ.get("SANDBOX_EVENTS_URL") or None,
        help="push Ingram's and Partner Center's events to this base URL (its /ingram/"
        "order-status and /partner-center), e.g. http://127.0.0.1:8000/v1/webhooks (default: "
        "$SANDBOX_EVENTS_URL; none)",
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("SANDBOX_PUBLIC_URL") or None,
        help="the sandbox's own URL in the events (certificate URL, ResourceUri) (default: "
        "$SANDBOX_PUBLIC_URL, else http(s)://host:port)",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    seed = args.faults_seed
    if seed is None and (env_seed := os.environ.get("SANDBOX_FAULTS_SEED", "").strip()):
        try:
            seed = int(env_seed)
        except ValueError:
            parser.error(f"SANDBOX_FAULTS_SEED must be an integer, got {env_seed!r}")
    try:
        faults = FaultProfile.parse(args.faults, seed=seed)
    except FaultSpecError as err:
        parser.error(str(err))

    app = create_app(
        state_file=args.state_file,
        provisioning_delay_seconds=args.provisioning_delay,
        token=args.token,
        enforce_relationship=args.enforce_relationship,
        faults=faults,
        xvantage_client_id=args.xvantage_client_id,
        xvantage_client_secret=args.xvantage_client_secret,
        xvantage_order_delay_seconds=args.xvantage_order_delay,
        partner_center_client_id=args.partner_center_client_id,
        partner_center_client_secret=args.partner_center_client_secret,
        partner_center_refresh_token=args.partner_center_refresh_token,
        events_url=args.events_url,
        # Ingram's shared secret: from the environment only, never on a command line.
        events_secret=os.environ.get("SANDBOX_EVENTS_SECRET") or None,
        events_public_url=args.public_url
        or f"{'https' if args.tls_dir else 'http'}://{args.host}:{args.port}",
    )
    tls = self_signed(args.tls_dir) if args.tls_dir else None
    ssl = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
    log.info(
        "sandbox.listening",
        url=f"{'https' if tls else 'http'}://{args.host}:{args.port}",
        state_file=str(args.state_file) if args.state_file else None,
        provisioning_delay_seconds=args.provisioning_delay,
        faults=args.faults or None,
        faults_seed=seed,
        events_url=args.events_url,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **ssl)


if __name__ == "__main__":
    main()
