"""`python -m http_api [--host H] [--port P]`: the HTTP API on uvicorn (API_HOST, API_PORT)."""

from __future__ import annotations

import argparse
import gc
import sys

import uvicorn

from csp_core.settings import get_settings
from http_api.app import create_app
from temporalutil.logging import configure_logging
from temporalutil.metrics import ProcessMetrics


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m http_api", description=__doc__)
    parser.add_argument("--host", default=settings.api_host, help="default: API_HOST")
    parser.add_argument("--port", type=int, default=settings.api_port, help="default: API_PORT")
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, settings.log_json)
    try:
        # log_config=None: uvicorn's own lines go through the project's structlog setup. Its
        # access log names method, path and status; never a header (the API key).
        metrics = ProcessMetrics.create(service="csp-api", database_url=settings.database_url)
        app = create_app(settings, metrics=metrics)
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    finally:
        gc.collect()  # sdk-python#300: avoid the native runtime's crash at interpreter exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
