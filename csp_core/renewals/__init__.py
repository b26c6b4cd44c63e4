"""Renewals: billing periods, the cutoff and the escalation ladder, and the values the renewal
workflows carry."""
