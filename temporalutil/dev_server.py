"""How the local Temporal dev server (`temporal server start-dev`) is started: by the dev stack,
the benchmarks and the tests that need a real server, alike."""

from temporalutil.search_attributes import dev_server_args as search_attribute_args

# WAL: the same durability for a dev box, ~2.5x the throughput of the default journal.
SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
# As deploy/temporal/dynamicconfig/production.yaml sets them for docker-compose: an activity the
# workflow schedules goes straight to the worker that scheduled it (a round trip less per step).
DYNAMIC_CONFIG = {"system.enableActivityEagerExecution": "true"}


def dynamic_config_args() -> list[str]:
    args: list[str] = []
    for key, value in DYNAMIC_CONFIG.items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    return args


def dev_server_args() -> list[str]:
    """The contract's search attributes and the stack's dynamic config (the database file and
    its pragmas are the caller's: an in-memory server has none)."""
    return [*search_attribute_args(), *dynamic_config_args()]
