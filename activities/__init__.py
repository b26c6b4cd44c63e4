"""Thin adapters between workflows and the domain's ports. Each activity is idempotent under
retries and worker crashes: provider writes carry a deterministic MS-RequestId, registry writes
are upserts, and e-mails are claimed in a ledger before they are sent."""
