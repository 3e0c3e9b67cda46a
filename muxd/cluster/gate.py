"""Every call a box makes to the cluster's PostgreSQL goes through one :class:`Gate`: it counts
the call, logs when PostgreSQL goes away and comes back (once per change, never per call), and
while PostgreSQL is known to be down lets one call at a time find out whether it is back;
the others fail at once instead of each waiting for the call timeout (so GET_NUMBER answers
"no numbers" at once while PostgreSQL hangs)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from muxd.cluster.metrics import ClusterMetrics
from muxd.cluster.records import ClusterUnavailable

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


class NotTried(ClusterUnavailable):
    """The call was not made: PostgreSQL is down and another call is probing it."""


class Gate:
    def __init__(self, metrics: ClusterMetrics) -> None:
        self._metrics = metrics
        self.up: bool | None = None  # None: no call made yet
        self._probing = False
        self.last_error: str | None = None

    async def run(self, call: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` as the call named ``call``; raises :class:`ClusterUnavailable`."""
        probe = self.up is False
        if probe and self._probing:
            self._metrics.call(call, "skipped")
            raise NotTried(f"{call}: PostgreSQL unavailable ({self.last_error})")
        if probe:
            self._probing = True
        try:
            result = await fn()
        except ClusterUnavailable as exc:
            self._metrics.call(call, "unavailable")
            self.failed(str(exc))
            raise
        finally:
            if probe:
                self._probing = False
        self._metrics.call(call, "ok")
        self.answered()
        return result

    def failed(self, error: str) -> None:
        self.last_error = error
        if self.up is not False:
            LOGGER.error(
                "cluster: PostgreSQL unavailable (%s): GET_NUMBER answers no numbers, SMS are"
                " still received and journaled here",
                error,
            )
        self.up = False

    def answered(self) -> None:
        if self.up is False:
            LOGGER.warning("cluster: PostgreSQL answers again")
        self.up = True
