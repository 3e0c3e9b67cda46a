"""v2 number health (``upstream.check_numbers``): Onlinesim's checkNumber, one listed number at a
time, to show per port what only Onlinesim knows: a banned number, its failed operations
(``errors``), and "rent finished: replace the SIM" (status 6: the number earns nothing more).

Rate: one call every ``interval`` seconds at most (never below :data:`MIN_INTERVAL`), each
number at most once per :data:`RECHECK_AFTER`; a failed call waits :data:`FAILURE_WAIT`, so an
hour-long outage costs 60 calls. Numbers that were never checked go first, then the one
checked longest ago. State changes are logged (a number becomes banned, or is to be
replaced), not calls. The result lands on each port holding the number
(:attr:`PortInfo.health`), read by ``/api/ports``, the status page and the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from muxd.errors import UpstreamError
from muxd.log import mask_number
from muxd.ports import PortInfo
from muxd.upstream.v2 import V2Client

LOGGER = logging.getLogger(__name__)

# Default floor between two checkNumber calls: 360 numbers an hour.
DEFAULT_INTERVAL: Final = 10.0
# No configuration may make the calls denser than this.
MIN_INTERVAL: Final = 1.0
# A number is checked again at most this often.
RECHECK_AFTER: Final = 3600.0
# After a failed call (network, 5xx, refused): this long before the next one.
FAILURE_WAIT: Final = 60.0
# checkNumber status: the number was used for rent and will earn nothing more.
STATUS_RENT_FINISHED: Final = 6

Sleep = Callable[[float], Awaitable[None]]


def health_of(reply: dict[str, Any], number: str, checked_at: float) -> dict[str, Any]:
    """What a port shows from one checkNumber answer."""
    status = reply.get("status")
    errors = reply.get("errors")
    return {
        "number": number,
        "banned": bool(reply.get("banned")),
        "errors": errors if isinstance(errors, int) and not isinstance(errors, bool) else 0,
        "status": status,
        "status_text": reply.get("status_text"),
        "replace": status == STATUS_RENT_FINISHED,
        "banned_services": sorted(reply.get("banned_service") or {}),
        "checked_at": checked_at,
    }


class NumberHealth:
    def __init__(
        self,
        client: V2Client,
        ports: Callable[[], Iterable[PortInfo]],
        listed: Callable[[], Iterable[str]],
        *,
        interval: float = DEFAULT_INTERVAL,
        recheck: float = RECHECK_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._ports = ports
        self._listed = listed
        self.interval = max(interval, MIN_INTERVAL)
        self._recheck = recheck
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.checked: dict[str, float] = {}  # number -> clock time of its last check
        self.health: dict[str, dict[str, Any]] = {}  # number -> last health
        self.failing = False
        self.progress = asyncio.Event()  # set after each answered check (status page, tests)

    def next_number(self) -> str | None:
        """The listed number due for a check: never checked first, then the oldest check."""
        now = self._clock()
        due = [
            (self.checked.get(n, float("-inf")), n)
            for n in self._listed()
            if now - self.checked.get(n, float("-inf")) >= self._recheck
        ]
        return min(due)[1] if due else None

    async def check_next(self) -> str | None:
        """Check one due number (raises UpstreamError); the number checked, or None."""
        number = self.next_number()
        if number is None:
            return None
        now = self._clock()
        try:
            reply = await self._client.check_number(number)
        except UpstreamError:
            # Due again after FAILURE_WAIT, behind numbers never checked: one number that
            # makes checkNumber fail does not starve the others.
            self.checked[number] = now - self._recheck + FAILURE_WAIT
            raise
        self.checked[number] = now
        health = health_of(reply, number, self._wall())
        before = self.health.get(number)
        self.health[number] = health
        self._log_change(before, health)
        self.progress.set()
        return number

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        """What checkNumber last said about ``number`` (None: never checked, or no number)."""
        return self.health.get(number) if number is not None else None

    def _log_change(self, before: dict[str, Any] | None, now: dict[str, Any]) -> None:
        # Numbers masked (the status page and /api/ports show the port and the whole number).
        now = {**now, "number": mask_number(now["number"])}
        was_banned = before is not None and before["banned"]
        was_replace = before is not None and before["replace"]
        if now["banned"] and not was_banned:
            LOGGER.warning(
                "%s: banned upstream (%d failed operations)", now["number"], now["errors"]
            )
        elif was_banned and not now["banned"]:
            LOGGER.info("%s: no longer banned upstream", now["number"])
        if before is not None and now["errors"] > before["errors"] and not now["banned"]:
            number, errors, was = now["number"], now["errors"], before["errors"]
            LOGGER.info("%s: %d failed operations upstream (was %d)", number, errors, was)
        if now["replace"] and not was_replace:
            LOGGER.warning("%s: rent finished upstream, replace the SIM", now["number"])

    async def run(self) -> None:
        while True:
            try:
                checked = await self.check_next()
                delay = self.interval
                if checked is not None and self.failing:
                    LOGGER.warning("checkNumber answers again")
                    self.failing = False
            except UpstreamError as exc:
                if not self.failing:  # one line per state change, not one per call
                    LOGGER.error("checkNumber failing: %s", exc)
                self.failing = True
                delay = max(self.interval, FAILURE_WAIT)
            await self._sleep(delay)
