"""The csp-orchestrator domain: models, rules, settings, registry, provider and mail adapters.

Nothing in this package imports Temporal: workflows and activities depend on it, never the reverse.
"""
