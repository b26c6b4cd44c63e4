"""Alembic migrations of the registry (configured in code by csp_core.registry.migrate)."""
