"""Publishes the sellable numbers to Onlinesim v2.

``numbers_mode = "list"``: sendNumbersOnline carries the full list at start, every ``interval``
(the 5-minute uptime proof) and, debounced, after changes, so a burst of ports coming up is one
request. ``numbers_mode = "incremental"``: checkWork every ``interval`` as the uptime proof, and
addNumber / removeNumber per changed number, with bounded concurrency and retries; what was
published is kept in the journal, so a restart reconciles instead of starting blind.

Only sellable ports are ever published: over-reporting gets the partner blocked for 30 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import msgspec

from muxd.errors import JournalError, UpstreamError
from muxd.modem.state import PortInfo
from muxd.store import Journal
from muxd.upstream.backoff import Backoff
from muxd.upstream.v2 import NumberEntry, V2Client

LOGGER = logging.getLogger(__name__)

# Wait this long after a change for further changes before publishing (500 ports coming up at
# once become one request).
DEBOUNCE = 2.0
# After a failed publish, try again after a capped, jittered backoff.
RETRY_FIRST = 5.0
RETRY_CAP = 120.0
# At start, ports take a few seconds to initialise: don't publish an empty list (which would
# withdraw every number) before they had the chance; each port coming up triggers a publish.
STARTUP_GRACE = 30.0
# Incremental mode: at most this many addNumber/removeNumber requests in flight.
INCREMENTAL_CONCURRENCY = 8

_ENTRY = msgspec.json.Encoder()


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


def entry_json(entry: NumberEntry) -> str:
    return _ENTRY.encode(entry).decode()


class NumbersPublisher:
    def __init__(
        self,
        client: V2Client,
        ports: Callable[[], Iterable[PortInfo]],
        changed: asyncio.Event,
        journal: Journal,
        *,
        interval: float,
        rent: bool,
        incremental: bool = False,
        on_published: Callable[[int], None] | None = None,
        debounce: float = DEBOUNCE,
        startup_grace: float = STARTUP_GRACE,
    ) -> None:
        self._debounce = debounce
        self._startup_grace = startup_grace
        self._client = client
        self._ports = ports
        self._changed = changed
        self._journal = journal
        self._interval = interval
        self._rent = rent
        self._incremental = incremental
        self._on_published = on_published
        self._backoff = Backoff(RETRY_FIRST, RETRY_CAP)
        self._force = False
        self.published: dict[str, str] = {}  # number -> entry JSON, as the upstream has it
        self.ids: dict[str, int | None] = {}

    def listed_numbers(self) -> frozenset[str]:
        """A snapshot of the numbers the upstream lists now."""
        return frozenset(self.published)

    def request(self) -> None:
        """Publish soon even if the list looks unchanged (the upstream forgot a number)."""
        self._force = True
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        known = await self._journal.published_numbers()
        self.published = {n: e for n, (e, _i) in known.items() if e is not None}
        self.ids = {n: i for n, (_e, i) in known.items()}
        next_heartbeat = loop.time() + self._startup_grace
        retry_at: float | None = None
        while True:
            wake = next_heartbeat if retry_at is None else min(next_heartbeat, retry_at)
            try:
                async with asyncio.timeout(max(0.0, wake - loop.time())):
                    await self._changed.wait()
                await asyncio.sleep(self._debounce)
            except TimeoutError:
                pass
            self._changed.clear()
            heartbeat = loop.time() >= next_heartbeat
            entries = sellable_entries(self._ports(), rent=self._rent)
            try:
                if self._incremental:
                    await self._sync_incremental(entries, heartbeat=heartbeat)
                else:
                    await self._sync_list(entries, heartbeat=heartbeat)
            except JournalError as exc:
                LOGGER.error("publishing paused: %s", exc)
                await self._journal.wait_healthy()
                continue
            except UpstreamError as exc:
                delay = self._backoff.next_delay()
                LOGGER.warning("publishing numbers failed (%s); retrying in %.0f s", exc, delay)
                retry_at = loop.time() + delay
                continue
            self._backoff.reset()
            retry_at = None
            if heartbeat:
                next_heartbeat = loop.time() + self._interval

    async def _sync_list(self, entries: list[NumberEntry], *, heartbeat: bool) -> None:
        wanted = {e.number: entry_json(e) for e in entries}
        if not heartbeat and not self._force and wanted == self.published:
            return
        ids = await self._client.send_numbers_online(entries)
        self._force = False
        now = time.time()
        removed = [n for n in self.published if n not in wanted]
        await self._journal.remember_numbers([(n, e, ids.get(n)) for n, e in wanted.items()], now)
        if removed:
            await self._journal.forget_numbers(removed)
        self.published = wanted
        self.ids = {n: ids.get(n) for n in wanted}
        await self._journal.release_held(list(wanted))
        if self._on_published is not None:
            self._on_published(len(entries))
        LOGGER.info("published %d numbers", len(entries))

    async def _sync_incremental(self, entries: list[NumberEntry], *, heartbeat: bool) -> None:
        if heartbeat:
            await self._client.check_work()
        wanted = {e.number: e for e in entries}
        force, self._force = self._force, False
        to_add = [e for n, e in wanted.items() if force or self.published.get(n) != entry_json(e)]
        to_remove = [n for n in self.published if n not in wanted]
        if not to_add and not to_remove:
            return
        limit = asyncio.Semaphore(INCREMENTAL_CONCURRENCY)
        failures: list[UpstreamError] = []

        async def add(entry: NumberEntry) -> None:
            async with limit:
                try:
                    ids = await self._client.add_number(entry)
                except UpstreamError as exc:
                    failures.append(exc)
                    return
            js = entry_json(entry)
            await self._journal.remember_numbers(
                [(entry.number, js, ids.get(entry.number))], time.time()
            )
            self.published[entry.number] = js
            self.ids[entry.number] = ids.get(entry.number)

        async def remove(number: str) -> None:
            async with limit:
                try:
                    await self._client.remove_number(number)
                except UpstreamError as exc:
                    if exc.status != 400:  # 400: the upstream doesn't have it: already gone
                        failures.append(exc)
                        return
            await self._journal.forget_numbers([number])
            self.published.pop(number, None)
            self.ids.pop(number, None)

        # Removals first: never list more numbers than the fleet has, even for a moment.
        await asyncio.gather(*(remove(n) for n in to_remove))
        await asyncio.gather(*(add(e) for e in to_add))
        await self._journal.release_held([e.number for e in to_add if e.number in self.published])
        if self._on_published is not None:
            self._on_published(len(self.published))
        LOGGER.info(
            "numbers: %d added/updated, %d removed, %d failed",
            len(to_add),
            len(to_remove),
            len(failures),
        )
        if failures:
            self._force = self._force or force
            raise failures[0]
