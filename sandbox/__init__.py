"""A local Partner Center stand-in: a real HTTP server speaking the v1 REST shapes the
PartnerCenterClient uses, with sandbox-only controls under /sandbox/."""

from sandbox.app import create_app
from sandbox.server import serve_in_background

__all__ = ["create_app", "serve_in_background"]
