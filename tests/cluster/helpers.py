"""Small builders shared by the cluster tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from muxd.cluster.records import NumberEntry

# How long a test waits for something that happens by itself (a lease running out, a lock
# released by a dead connection) before failing, and how often it looks.
WAIT_LIMIT = 10.0
POLL = 0.05


def entry(
    number: str, country: str = "germany", operator: str = "vodafone", *, port: str = ""
) -> NumberEntry:
    return NumberEntry(
        number=number,
        port=port or f"port-{number[-3:]}",
        iccid=f"8949{number[-10:]}",
        country=country,
        country_id=49,
        operator=operator,
    )


async def wait_until(check: Callable[[], Awaitable[bool]], limit: float = WAIT_LIMIT) -> float:
    """Poll ``check`` until it holds; return the seconds it took (fails past ``limit``)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise AssertionError(f"condition not reached within {limit} s")
        await asyncio.sleep(POLL)
    return time.monotonic() - start
