"""A small pool of open SMTP connections (aiosmtplib), shared by concurrent sends.

A new connection per e-mail cost the worker a TCP handshake, the greeting, EHLO (plus STARTTLS
and AUTH in production) and QUIT for every notice: about a third of an e-mail's CPU in the
renewal benchmark. The pool keeps up to `size` connections: a send borrows one (waiting, at most
`wait`, while all are busy, so a burst of notices never opens more than `size` connections to the
mail server), and gives it back when the conversation left it usable. A connection idle for
`idle_timeout` is closed (QUIT), before mail servers drop theirs (Postfix after 300 s, many
relays after 60 s); one the server dropped anyway is noticed when borrowed and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiosmtplib

DEFAULT_SIZE = 4
DEFAULT_IDLE_TIMEOUT = 30.0
QUIT_TIMEOUT = 5.0


class SmtpPool:
    """Open connections made by `connect`, bound to the event loop that uses them."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[aiosmtplib.SMTP]],
        *,
        size: int = DEFAULT_SIZE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        wait: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("an SMTP pool needs at least one connection")
        self._connect = connect
        self.size = size
        self.idle_timeout = idle_timeout
        self.wait = wait
        self.opened = 0  # connections opened over the pool's life (for tests and logs)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, idle since)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(size)
        self._reaper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Another event loop (a test's, a restarted worker's): connections made on the old
            # one cannot be used from this one; they are dropped, not closed (their loop is gone).
            self._idle.clear()
            self._slots = asyncio.Semaphore(self.size)
            self._reaper = None
            self._loop = loop
        return loop

    async def acquire(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connection and whether it served an earlier send. Give it back with release()."""
        loop = self._bind()
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait)
        except TimeoutError:
            # OSError: the mailer classifies it as retryable, like a connection timeout.
            raise TimeoutError(
                f"no SMTP connection free within {self.wait:g} s ({self.size} in use)"
            ) from None
        try:
            while self._idle:
                smtp, since = self._idle.pop()  # the most recently used: least likely dropped
                if smtp.is_connected and loop.time() - since < self.idle_timeout:
                    return smtp, True
                smtp.close()
            return await self.open(), False
        except BaseException:
            self._slots.release()
            raise

    async def open(self) -> aiosmtplib.SMTP:
        """A new connection (to replace a dropped one while keeping the borrowed slot)."""
        smtp = await self._connect()
        self.opened += 1
        return smtp

    def release(self, smtp: aiosmtplib.SMTP, *, reusable: bool) -> None:
        """Give back the connection acquire() lent: kept for the next send when `reusable` (the
        conversation ended cleanly) and still connected, else closed."""
        loop = self._bind()
        if reusable and smtp.is_connected:
            self._idle.append((smtp, loop.time()))
            if self._reaper is None:
                self._reaper = loop.call_later(self.idle_timeout, self._reap)
        else:
            smtp.close()
        self._slots.release()

    def _reap(self) -> None:
        """Close the connections idle for idle_timeout; look again when the next one is due."""
        self._reaper = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        keep = []
        for smtp, since in self._idle:
            if now - since >= self.idle_timeout:
                self._quit_later(smtp)
            else:
                keep.append((smtp, since))
        self._idle = keep
        if keep:
            due = min(since for _, since in keep) + self.idle_timeout
            self._reaper = loop.call_at(due, self._reap)

    def _quit_later(self, smtp: aiosmtplib.SMTP) -> None:
        task = asyncio.get_running_loop().create_task(_quit(smtp))
        self._closing.add(task)  # a reference until it ends, so it is not collected midway
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """QUIT every idle connection (the worker's shutdown). The pool stays usable."""
        if self._loop is not asyncio.get_running_loop():
            self._idle.clear()
            return
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(smtp) for smtp, _ in idle), *self._closing)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    """Say goodbye politely; a server that is gone already needs no goodbye."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await smtp.quit(timeout=QUIT_TIMEOUT)
    smtp.close()
