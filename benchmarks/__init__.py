"""Benchmarks of the local stack (not tests): `make bench` runs orders.py and renewals.py."""
