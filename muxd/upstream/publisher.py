"""Publishes the sellable numbers to Onlinesim v2.

``numbers_mode = "list"``: sendNumbersOnline carries the full list at start, every ``interval``
(the uptime proof, counted from the start of the previous one) and, debounced, after changes,
so a burst of ports coming up is one request. ``numbers_mode = "incremental"``: checkWork every
``interval`` as the uptime proof, and addNumber / removeNumber per changed number, with bounded
concurrency; the two are separate loops, so a failing checkWork never holds back a number
change. What was published is kept in the journal, so a restart reconciles instead of starting
blind.

Every failure goes through one :class:`~muxd.upstream.backoff.RetryLoop` per loop: capped,
jittered backoff from the start of the failed attempt, a floor even when each attempt fails at
once, ``Retry-After`` honoured, one log line per state change. While the numbers loop fails,
one addNumber/removeNumber probes the upstream before the rest go out.

Only sellable ports are ever published: over-reporting gets the partner blocked for 30 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import msgspec

from muxd.errors import JournalError, UpstreamError
from muxd.ports import PortInfo
from muxd.store import Journal
from muxd.store.journal import PublishedNumber
from muxd.upstream.backoff import Policy, RetryLoop
from muxd.upstream.v2 import NumberEntry, V2Client

LOGGER = logging.getLogger(__name__)

# Wait this long after a change for further changes before publishing (500 ports coming up at
# once become one request).
DEBOUNCE = 2.0
# After a failed publish or heartbeat: first retry after 5 s, doubling (jittered) up to 5
# minutes; at least 1 s after a failed attempt ended. An hour-long outage costs ~20 attempts
# per loop.
RETRY_POLICY = Policy(first=5.0, cap=300.0, floor=1.0)
# At start, ports take a few seconds to initialise: don't publish an empty list (which would
# withdraw every number) before they had the chance; each port coming up triggers a publish.
STARTUP_GRACE = 30.0
# After a journal failure: a commit failure is waited out (intake stops until a probe write
# succeeds), but one operation failing on its own (a constraint, a bug) leaves the journal
# healthy, and the list may have gone upstream already: wait this long, doubled per failure up
# to the cap, before publishing again.
JOURNAL_RETRY_MIN = 5.0
JOURNAL_RETRY_MAX = 300.0
# Incremental mode: at most this many addNumber/removeNumber requests in flight.
INCREMENTAL_CONCURRENCY = 8
# 400 to removeNumber: the upstream does not have the number: it is gone already.
REMOVE_GONE = 400

_ENTRY = msgspec.json.Encoder()

Sleep = Callable[[float], Awaitable[None]]


class FleetSource(Protocol):
    """List mode when several boxes share one account: one box at a time publishes the whole
    fleet's list. Its ``request`` is called when this box should publish (it took over, the
    fleet's list changed)."""

    async def entries(self) -> list[NumberEntry] | None:
        """The fleet's list, read just now; None when this box must not publish (another box
        does, or the list cannot be read fresh)."""
        ...

    async def published(self, entries: list[NumberEntry]) -> None:
        """Onlinesim accepted ``entries``, the list :meth:`entries` gave (never raises)."""
        ...

    def ask_republish(self) -> None:
        """Onlinesim does not have a number this box counts as listed: have the box that
        publishes the list publish it again."""
        ...

    def listed(self) -> frozenset[str]:
        """This box's numbers on the fleet's list (its shipper delivers SMS for these)."""
        ...

    def standby(self) -> bool:
        """Another box publishes the list and the shared state answers: this box proves it
        reaches the upstream with checkWork instead."""
        ...


def sellable_entries(
    ports: Iterable[PortInfo], *, rent: bool, hold: float = 0.0, now: float = 0.0
) -> list[NumberEntry]:
    """The numbers to list; ``hold``: a registration lost less than that long before ``now``
    (monotonic) still counts (``modems.unregistered_hold``)."""
    seen: set[str] = set()
    entries: list[NumberEntry] = []
    for info in sorted(ports, key=lambda p: p.name):
        sellable = info.sellable_held(now, hold) if hold > 0 else info.sellable
        if not sellable or info.number is None or info.country_id is None:
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        policy: Policy = RETRY_POLICY,
        hold: float = 0.0,
        fleet: FleetSource | None = None,
    ) -> None:
        self._fleet = fleet  # list mode across boxes: the fleet's list, when this box publishes it
        self._standby_check = -math.inf  # when the next checkWork of a box on standby may go
        self._hold = hold  # modems.unregistered_hold, seconds
        self._hold_handled = -math.inf  # hold ends up to this clock time were acted on
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
        self._clock = clock
        self._sleep = sleep
        self._force = False
        self.published: dict[str, str] = {}  # number -> entry JSON, as the upstream has it
        # listed_numbers()'s last snapshot and the dict it was taken of; None once a number is
        # added or removed in place (one per shipped batch otherwise: hundreds of numbers).
        self._snapshot: tuple[dict[str, str], frozenset[str]] | None = None
        self.ids: dict[str, int | None] = {}
        # List mode: one loop (sendNumbersOnline is both the heartbeat and the change).
        # Incremental mode: the checkWork heartbeat and the number changes fail separately.
        self.numbers_loop = RetryLoop(
            "numbers", policy, clock=clock, logger=LOGGER, what="publishing numbers"
        )
        self.heartbeat_loop = RetryLoop(
            "heartbeat", policy, clock=clock, logger=LOGGER, what="checkWork heartbeat"
        )
        self._next_heartbeat = math.inf
        self._journal_backoff = 0.0  # the wait after the last journal failure (0: none)

    @property
    def loops(self) -> list[RetryLoop]:
        """The retry states this publisher runs (metrics, health, status page)."""
        if self._incremental:
            return [self.heartbeat_loop, self.numbers_loop]
        return [self.numbers_loop]

    def listed_numbers(self) -> frozenset[str]:
        """A snapshot of the numbers the upstream lists now."""
        if self._fleet is not None and not self._incremental:
            return self._fleet.listed()
        snapshot = self._snapshot
        if snapshot is None or snapshot[0] is not self.published:
            snapshot = self._snapshot = (self.published, frozenset(self.published))
        return snapshot[1]

    def republish(self) -> None:
        """An SMS met NO_NUMBER for a number counted as listed: publish again, or, when another
        box publishes the fleet's list, ask it to."""
        if self._fleet is not None and not self._incremental:
            self._fleet.ask_republish()
        else:
            self.request()

    def request(self) -> None:
        """Publish soon even if the list looks unchanged (the upstream forgot a number)."""
        self._force = True
        self._changed.set()

    async def run(self) -> None:
        known = await self._journal.published_numbers()
        self.published = {n: k.entry for n, k in known.items() if k.entry is not None}
        self.ids = {n: k.onlinesim_id for n, k in known.items()}
        self._next_heartbeat = self._clock() + self._startup_grace
        dirty = False  # a change waits to be published
        while True:
            if await self._wait(self._wake_at(dirty)):
                dirty = True
                await self._sleep(self._debounce)
            elif self._clock() >= (ends := self._hold_ends()):
                self._hold_handled = ends  # a held number's hold is over: withdraw it
                dirty = True
            self._changed.clear()
            entries = sellable_entries(
                self._ports(), rent=self._rent, hold=self._hold, now=self._clock()
            )
            try:
                if self._incremental:
                    # Each heartbeat also reconciles the numbers (whatever checkWork answers).
                    reconcile = dirty or self._heartbeat_due()
                    await self._heartbeat()
                    if self.numbers_loop.wait() <= 0 and reconcile:
                        await self._attempt_incremental(entries)
                        dirty = False
                elif self.numbers_loop.wait() <= 0 and (dirty or self._heartbeat_due()):
                    listing = entries if self._fleet is None else await self._fleet_entries()
                    if listing is not None:
                        await self._attempt_list(listing)
                    dirty = False
            except JournalError as exc:
                if not self._journal_backoff:  # one line per state change, not per attempt
                    LOGGER.error("publishing paused: %s", exc)
                await self._journal.wait_healthy()
                self._journal_backoff = min(
                    JOURNAL_RETRY_MAX, max(JOURNAL_RETRY_MIN, 2 * self._journal_backoff)
                )
                await self._sleep(self._journal_backoff)
                dirty = True
            else:
                if self._journal_backoff:
                    LOGGER.warning("publishing resumed: the journal records again")
                    self._journal_backoff = 0.0
            if not self.numbers_loop.ok:
                dirty = True  # the failed change is retried when the backoff allows

    async def _fleet_entries(self) -> list[NumberEntry] | None:
        """List mode across boxes: the fleet's list when this box publishes it now. Otherwise
        nothing is due here until the fleet asks (:meth:`request`), and a failure of this box's
        own earlier attempts is nobody's to retry."""
        assert self._fleet is not None
        listing = await self._fleet.entries()
        if listing is None:
            self._next_heartbeat = self._clock() + self._interval
            loop = self.numbers_loop
            if not loop.ok:
                LOGGER.warning("publishing numbers: this box does not publish the fleet's list now")
                loop.failing_since, loop.attempts, loop.next_at = None, 0, -math.inf
            if self._fleet.standby() and self._clock() >= self._standby_check:
                # At most once per interval, whatever wakes the loop (its outcome is counted
                # by the client's observer; the holder's list is the uptime proof).
                self._standby_check = self._clock() + self._interval
                with contextlib.suppress(UpstreamError):
                    await self._client.check_work()
        return listing

    def _heartbeat_due(self) -> bool:
        return self._clock() >= self._next_heartbeat

    def _wake_at(self, dirty: bool) -> float:
        """When the loop has something to do next (clock time)."""
        numbers = self._next_heartbeat if not self._incremental else math.inf
        if dirty:
            numbers = -math.inf
        wake = max(numbers, self.numbers_loop.next_at)
        if self._incremental:
            wake = min(wake, max(self._next_heartbeat, self.heartbeat_loop.next_at))
        return min(wake, self._hold_ends())

    def _hold_ends(self) -> float:
        """When the next listed number whose registration is lost reaches the end of its hold
        (clock time; inf: none). Each end is acted on once (a failed withdrawal is retried by
        the numbers loop's backoff, not by this wake-up)."""
        if self._hold <= 0:
            return math.inf
        ends = [
            lost + self._hold
            for p in self._ports()
            if not p.registered
            and (lost := p.unregistered_at) is not None
            and p.number in self.published
            and lost + self._hold > self._hold_handled
        ]
        return min(ends, default=math.inf)

    async def _wait(self, until: float) -> bool:
        """Until ``until`` (clock time) or a change; True on a change."""
        if self._changed.is_set():
            return True
        delay = until - self._clock()
        if delay <= 0:
            return False
        changed = asyncio.ensure_future(self._changed.wait())
        timer = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait((changed, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (changed, timer):
                task.cancel()
            await asyncio.gather(changed, timer, return_exceptions=True)
        return self._changed.is_set()

    async def _heartbeat(self) -> None:
        """Incremental mode: checkWork when due; its failure only delays the next checkWork."""
        loop = self.heartbeat_loop
        if not self._heartbeat_due() or loop.wait() > 0:
            return
        started = self._clock()
        try:
            await self._client.check_work()
        except UpstreamError as exc:
            loop.failed(started, exc, exc.retry_after)
            return
        loop.succeeded()
        self._next_heartbeat = started + self._interval

    async def _attempt_list(self, entries: list[NumberEntry]) -> None:
        started = self._clock()
        try:
            await self._sync_list(
                entries, heartbeat=self._heartbeat_due() or not self.numbers_loop.ok
            )
        except UpstreamError as exc:
            self.numbers_loop.failed(started, exc, exc.retry_after)
            return
        self.numbers_loop.succeeded()

    async def _attempt_incremental(self, entries: list[NumberEntry]) -> None:
        started = self._clock()
        try:
            await self._sync_incremental(entries)
        except UpstreamError as exc:
            self.numbers_loop.failed(started, exc, exc.retry_after)
            return
        self.numbers_loop.succeeded()

    async def _sync_list(self, entries: list[NumberEntry], *, heartbeat: bool) -> None:
        wanted = {e.number: entry_json(e) for e in entries}
        if not heartbeat and not self._force and wanted == self.published:
            return
        started = self._clock()
        ids = await self._client.send_numbers_online(entries)
        if self._fleet is not None:
            await self._fleet.published(entries)
        # Every accepted list proves uptime: the next heartbeat is counted from its start.
        self._next_heartbeat = started + self._interval
        self._force = False
        now = time.time()
        removed = [n for n in self.published if n not in wanted]
        await self._journal.remember_numbers(
            [PublishedNumber(n, e, ids.get(n)) for n, e in wanted.items()], now
        )
        if removed:
            await self._journal.forget_numbers(removed)
        self.published = wanted
        self.ids = {n: ids.get(n) for n in wanted}
        await self._journal.release_held(list(wanted))
        if self._on_published is not None:
            self._on_published(len(entries))
        LOGGER.info("published %d numbers", len(entries))

    async def _sync_incremental(self, entries: list[NumberEntry]) -> None:
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
                if failures:  # the upstream just failed: the rest waits for the retry
                    return
                try:
                    ids = await self._client.add_number(entry)
                except UpstreamError as exc:
                    failures.append(exc)
                    return
            js = entry_json(entry)
            await self._journal.remember_numbers(
                [PublishedNumber(entry.number, js, ids.get(entry.number))], time.time()
            )
            if entry.number not in self.published:
                self._snapshot = None
            self.published[entry.number] = js
            self.ids[entry.number] = ids.get(entry.number)

        async def remove(number: str) -> None:
            async with limit:
                if failures:
                    return
                try:
                    await self._client.remove_number(number)
                except UpstreamError as exc:
                    if exc.status != REMOVE_GONE:
                        failures.append(exc)
                        return
            await self._journal.forget_numbers([number])
            self._snapshot = None
            self.published.pop(number, None)
            self.ids.pop(number, None)

        # Removals first: never list more numbers than the fleet has, even for a moment.
        removals: list[Callable[[], Awaitable[None]]] = [
            functools.partial(remove, n) for n in to_remove
        ]
        additions: list[Callable[[], Awaitable[None]]] = [functools.partial(add, e) for e in to_add]
        try:
            if not self.numbers_loop.ok:
                # Failing: one request probes the upstream before the rest go out.
                await (removals or additions).pop(0)()
            await asyncio.gather(*(job() for job in removals))
            await asyncio.gather(*(job() for job in additions))
        finally:
            await self._journal.release_held(
                [e.number for e in to_add if e.number in self.published]
            )
            if self._on_published is not None:
                self._on_published(len(self.published))
        if failures:
            self._force = self._force or force
            raise failures[0]
        LOGGER.info("numbers: %d added/updated, %d removed", len(to_add), len(to_remove))
