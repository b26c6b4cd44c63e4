"""Orchestration only: each workflow reads top to bottom as the business process it models.
No I/O, no wall clock, no randomness here: that is what activities are for."""
