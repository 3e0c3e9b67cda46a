"""A change counter with waiters: ``wait_until`` re-checks its predicate on every bump (no
polling, no sleeps), for test doubles whose state tests wait on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Changes:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def bump(self) -> None:
        """Something changed: every waiter checks its predicate again."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float, what: Callable[[], str]
    ) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``timeout`` seconds, its text
        ``what()`` (the condition waited for)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError as exc:
            raise TimeoutError(f"{what()} not met in {timeout} s") from exc
