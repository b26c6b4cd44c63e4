"""Subscriptions after purchase: the New Commerce windows that decide which changes are allowed."""
