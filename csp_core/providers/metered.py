"""Counting every provider call, whichever adapter answers it.

`MeteredProvider` wraps any implementation of the port (Partner Center, Ingram Xvantage, the
sandbox) and counts each call of a port operation, its errors by kind and its latency
(csp_core/metrics.py). It changes nothing else: same arguments, same answers, same exceptions.
The operations are read from the port (`Provider`), so an operation added there is counted
without touching this file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from csp_core.metrics import PROVIDER_CALL_SECONDS, PROVIDER_CALLS, PROVIDER_ERRORS
from csp_core.providers.port import NOT_OFFERED_BY_PROVIDER, Provider, ProviderError

# The port's operations: the public methods the Protocol declares.
OPERATIONS = frozenset(
    name for name, member in vars(Provider).items() if callable(member) and not name.startswith("_")
)


def error_kind(error: BaseException) -> str:
    """How a failed call failed, in the few words a dashboard groups by."""
    if isinstance(error, ProviderError):
        if error.code == NOT_OFFERED_BY_PROVIDER:
            return "not_offered"  # no API for it (Ingram): a person does it
        if error.status == 429:
            return "throttled"
        return "unavailable" if error.transient else "refused"
    return "error"


class MeteredProvider:
    """A provider whose port operations are counted; everything else is passed through."""

    def __init__(self, inner: Provider, provider: str) -> None:
        self._inner = inner
        self._provider = provider

    @property
    def inner(self) -> Provider:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        member = getattr(self._inner, name)
        if name not in OPERATIONS:
            return member
        return self._metered(name, member)

    def _metered(
        self, operation: str, call: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        labels = {"provider": self._provider, "operation": operation}

        @functools.wraps(call)
        async def metered(*args: Any, **kwargs: Any) -> Any:
            PROVIDER_CALLS.labels(**labels).inc()
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            except Exception as error:
                PROVIDER_ERRORS.labels(**labels, kind=error_kind(error)).inc()
                raise
            finally:
                PROVIDER_CALL_SECONDS.labels(**labels).observe(time.perf_counter() - started)

        return metered

    def __repr__(self) -> str:
        return f"MeteredProvider({self._inner!r})"


__all__ = ["OPERATIONS", "MeteredProvider", "error_kind"]
