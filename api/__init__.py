"""The thin client-side API per capability (what order systems and ops call), used by the CLI
in starter.py and by tests: validation first, then idempotent Temporal calls."""
