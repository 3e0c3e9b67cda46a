"""Publishes the sellable numbers to Onlinesim v2 (``numbers_mode = "list"``).

sendNumbersOnline carries the full list: at start, every ``interval`` (the 5-minute uptime
proof) and, debounced, after changes, so a burst of ports coming up is one request. Only
sellable ports are listed: over-reporting gets the partner blocked for 30 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from muxd.errors import UpstreamError
from muxd.modem.port import PortInfo
from muxd.upstream.v2 import NumberEntry, V2Client

LOGGER = logging.getLogger(__name__)

# Wait this long after a change for further changes before publishing (500 ports coming up at
# once become one request).
DEBOUNCE = 2.0
# After a failed publish, try again this soon (the reference's retry cadence for webhooks).
RETRY_DELAY = 10.0
# At start, ports take a few seconds to initialise: don't publish an empty list (which would
# withdraw every number) before they had the chance; each port coming up triggers a publish.
STARTUP_GRACE = 30.0


def sellable_entries(ports: Iterable[PortInfo], *, rent: bool) -> list[NumberEntry]:
    seen: set[str] = set()
    entries: list[NumberEntry] = []
    for info in sorted(ports, key=lambda p: p.name):
        if not info.sellable or info.number is None or info.country_id is None:
            continue
        if info.number in seen:  # the same SIM number in two ports: publish it once
            continue
        seen.add(info.number)
        entries.append(
            NumberEntry(
                number=info.number,
                country_id=info.country_id,
                operator=info.operator,
                date_start=int(info.since) if info.since else None,
                port_id=info.name[:100],
                rent=1 if rent else 0,
            )
        )
    return entries


class NumbersPublisher:
    def __init__(
        self,
        client: V2Client,
        ports: Callable[[], Iterable[PortInfo]],
        changed: asyncio.Event,
        *,
        interval: float,
        rent: bool,
        save_ids: Callable[[dict[str, int | None], float], Awaitable[None]],
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._ports = ports
        self._changed = changed
        self._interval = interval
        self._rent = rent
        self._save_ids = save_ids
        self._on_published = on_published
        self.published: list[NumberEntry] = []
        self.ids: dict[str, int | None] = {}
        self._force = False

    def request(self) -> None:
        """Publish soon even if the list looks unchanged (the upstream forgot a number)."""
        self._force = True
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_due = loop.time() + STARTUP_GRACE
        while True:
            wait = max(0.0, next_due - loop.time())
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
                await asyncio.sleep(DEBOUNCE)
            except TimeoutError:
                pass
            self._changed.clear()
            entries = sellable_entries(self._ports(), rent=self._rent)
            due = loop.time() >= next_due or self._force
            if not due and entries == self.published:
                continue
            self._force = False
            try:
                ids = await self._client.send_numbers_online(entries)
            except UpstreamError as exc:
                LOGGER.warning("sendNumbersOnline failed: %s", exc)
                next_due = loop.time() + RETRY_DELAY
                continue
            self.published = entries
            self.ids = ids
            await self._save_ids(ids, time.time())
            if self._on_published is not None:
                self._on_published(len(entries))
            LOGGER.info("published %d numbers", len(entries))
            next_due = loop.time() + self._interval
