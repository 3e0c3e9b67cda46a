"""Keeping a box's lease: renew it a few times per lease, survive PostgreSQL outages.

The lease is what makes a dead box's numbers leave the fleet's counts: a box that stops
renewing is out after ``lease`` seconds by the database's clock. Renewing three times per lease
lets one renewal fail (or take its whole call timeout) without the lease lapsing. During an
outage the loop keeps its pace (never faster than :data:`RETRY_FLOOR`, even when each attempt
fails at once: with the default 15 s lease an hour's outage costs 720 attempts) and logs the
change of state, not each attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from muxd.cluster.records import ClusterUnavailable
from muxd.cluster.store import ClusterStore

LOGGER = logging.getLogger(__name__)

# Renewals per lease period.
RENEWALS_PER_LEASE: Final = 3
# The least time between two attempts, whatever the lease.
RETRY_FLOOR: Final = 1.0


class LeaseKeeper:
    """``run()`` renews the store's box lease until cancelled; :attr:`live` says whether the
    last renewal went through (None before the first)."""

    def __init__(
        self,
        store: ClusterStore,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._sleep = sleep
        self.live: bool | None = None
        self.failures = 0  # renewals failed since the last success
        self.interval = max(RETRY_FLOOR, store.lease / RENEWALS_PER_LEASE)

    async def renew(self) -> bool:
        """One renewal; logs when the state changes. True when it went through."""
        try:
            await self._store.heartbeat()
        except ClusterUnavailable as exc:
            self.failures += 1
            if self.live is not False:
                LOGGER.error(
                    "cluster: cannot renew the lease of box %s: %s (retrying every %.0f s;"
                    " its numbers leave the fleet's counts once the lease runs out)",
                    self._store.box,
                    exc,
                    self.interval,
                )
            self.live = False
            return False
        if self.live is False:
            LOGGER.warning(
                "cluster: lease of box %s renewed again after %d failed attempts",
                self._store.box,
                self.failures,
            )
        elif self.live is None:
            LOGGER.info("cluster: box %s joined (lease %.0f s)", self._store.box, self._store.lease)
        self.live = True
        self.failures = 0
        return True

    async def run(self) -> None:
        while True:
            await self.renew()
            await self._sleep(self.interval)
