"""A local stand-in for the providers (Partner Center's v1 REST shapes and Ingram's Xvantage
face, over one world) and an SMTP sink, with sandbox-only controls under /sandbox/.

Nothing is imported here, so `python -m sandbox.smtp_sink` starts without loading the web app:
import `sandbox.app` (create_app) or `sandbox.server` (serve_in_background) directly.
"""
