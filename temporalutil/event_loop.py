"""The event loop the worker runs on: uvloop (libuv) unless EVENT_LOOP=asyncio.

The worker's loop carries every activity's HTTP, SMTP and registry hand-offs and the SDK's
callbacks from its native runtime; the standard library's selector loop spent a fifth of that
loop's CPU in its own scheduling and socket calls (py-spy during benchmarks/orders.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from csp_core.settings import EventLoop

T = TypeVar("T")


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A new loop of that kind (None: asyncio's default)."""
    if kind == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoop = "uvloop") -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
