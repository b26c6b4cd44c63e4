"""Benchmarks of the local stack (not tests): `make bench` runs benchmarks/orders.py."""
