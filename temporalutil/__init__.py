"""Temporal plumbing shared by the worker, the CLI and the tests: converter, client, search
attributes (the ops contract), sandbox configuration and logging."""
