"""v2 ``list`` mode across boxes: one box at a time publishes the whole fleet's number list.

Every box keeps its lease and stores its own sellable numbers in PostgreSQL (:class:`BoxNumbers`,
run with the lease by :func:`keep_box`). One box at a time holds the publisher lock, a session
advisory lock that goes with its connection: when the holder dies, PostgreSQL releases it and
another box takes it within :data:`ACQUIRE_INTERVAL` (plus the time PostgreSQL needs to notice a
dead connection). The holder publishes, through sendNumbersOnline, the sellable numbers of the
boxes whose lease is valid (:class:`FleetList`); the other boxes do not call sendNumbersOnline at
all. ``incremental`` mode stays per box and does not use this module's list.

The list is read from PostgreSQL right before each publication, never from a copy: when
PostgreSQL does not answer, the holder publishes nothing (the list Onlinesim has stays, and
without its uptime proof Onlinesim stops counting on it) and says so once; it resumes when
PostgreSQL answers again. A box whose lease lapsed leaves the list with the next publication.
Each box ships its own SMS as before, for the numbers the holder's last accepted list gave it:
the holder records that list in PostgreSQL (on its lock's connection, only while it holds the
lock) and renews the record every :data:`FLEET_POLL`; each box reads its share every
:data:`OWN_CHECK`. An SMS for a number stored but not yet on Onlinesim's list is held, not sent
to meet ``NO_NUMBER``, and goes out once the list with its number was accepted. A record not
renewed within :data:`RECORD_FRESH` (the holder died, or is an older muxd that records nothing)
is not trusted: a number then counts as listed once its box stored it, as before.

Paces, whatever PostgreSQL does: the holder looks every :data:`FLEET_POLL` s, the others try
the lock every :data:`ACQUIRE_INTERVAL` s, and while PostgreSQL fails every loop waits
:data:`OUTAGE_RETRY` s between attempts (an hour's outage: 720 attempts per loop). Each loop
logs changes of state, never attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from muxd.cluster.lease import LeaseKeeper
from muxd.cluster.records import ClusterUnavailable, NumberEntry
from muxd.cluster.store import ClusterStore
from muxd.config import Config
from muxd.errors import JournalError
from muxd.ports import PortInfo
from muxd.store import Journal
from muxd.upstream.v2 import REQUEST_TIMEOUT
from muxd.upstream.v2 import NumberEntry as ListEntry

LOGGER = logging.getLogger(__name__)

# The holder checks this often that it still holds the lock and whether the fleet's list
# changed (a box's numbers, a lease lapsing): two short round trips.
FLEET_POLL: Final = 2.0
# A box without the lock tries to take it this often (a new connection per try, closed at once
# when another box holds it).
ACQUIRE_INTERVAL: Final = 3.0
# A box compares its sellable numbers with what it stored this often (no round trip unless
# they differ), and in list mode reads which of them the accepted list has (one round trip).
OWN_CHECK: Final = 1.0
# After a failed round trip, every loop waits this long before the next attempt, even when each
# attempt fails at once (PostgreSQL down refuses connections instantly).
OUTAGE_RETRY: Final = 5.0
# At start, ports take a few seconds to come up: storing no numbers at all before this would
# take this box's numbers off the fleet's list for a moment; each number that comes up is
# stored at once.
STARTUP_GRACE: Final = 30.0
# A list the previous holder sent just before it lost the lock may still be on its way (and
# land after the new holder's): the new holder publishes once more this long after taking over,
# the v2 client's request timeout and a margin, so the newest list is the one that stays.
TAKEOVER_AGAIN: Final = REQUEST_TIMEOUT + 5.0
# The holder's record of the accepted list is trusted while renewed within this (every
# FLEET_POLL while it holds the lock; a takeover takes ACQUIRE_INTERVAL and a few seconds).
RECORD_FRESH: Final = 30.0
# The operator name stored for a SIM whose MCC+MNC is unknown.
UNKNOWN_OPERATOR: Final = "unknown"

# The fleet's list: one row per number (the newest if two boxes claim it), sellable, on a box
# whose lease is valid by the database's clock, with a calling code (v2 requires one).
FLEET: Final = (
    "SELECT DISTINCT ON (n.number) n.number, n.box, n.port, n.country_id,"
    # A box of an older muxd fills only the operator as text (its MCC+MNC, or "unknown").
    " coalesce(n.operator_code, CASE WHEN n.operator ~ '^[0-9]{1,9}$'"
    " THEN n.operator::integer END) AS operator_code, n.date_start"
    " FROM numbers n JOIN boxes b ON b.name = n.box"
    " WHERE b.lease_until > now() AND n.sellable AND n.country_id IS NOT NULL"
    " ORDER BY n.number, n.updated DESC"
)
# What the holder polls: a digest of the list, one short row instead of the list itself.
FLEET_DIGEST: Final = (
    "SELECT md5(coalesce(string_agg(concat_ws('|', number, box, port, country_id,"
    f" operator_code, date_start), ',' ORDER BY number), '')) FROM ({FLEET}) f"
)

Sleep = Callable[[float], Awaitable[None]]


def own_entries(
    ports: Iterable[PortInfo], *, hold: float = 0.0, now: float = 0.0
) -> list[NumberEntry]:
    """This box's sellable numbers as the cluster stores them (one entry per number); a
    registration lost less than ``hold`` s before ``now`` (monotonic) still counts. The country
    is the calling code and the operator the SIM's MCC+MNC, both as text; the operator code and
    ``date_start`` as one box alone lists them."""
    seen: set[str] = set()
    out: list[NumberEntry] = []
    for info in sorted(ports, key=lambda p: p.name):
        sellable = info.sellable_held(now, hold) if hold > 0 else info.sellable
        if not sellable or info.number is None or info.country_id is None:
            continue
        if info.number in seen:
            continue
        seen.add(info.number)
        out.append(
            NumberEntry(
                number=info.number,
                port=info.name,
                iccid=info.iccid,
                country=str(info.country_id),
                country_id=info.country_id,
                operator=UNKNOWN_OPERATOR if info.operator is None else str(info.operator),
                operator_code=info.operator,
                date_start=int(info.since) if info.since else None,
            )
        )
    return out


def list_entry(
    box: str,
    port: str,
    number: str,
    country_id: int,
    operator: int | None,
    date_start: int | None,
    rent: bool,
) -> ListEntry:
    """One sendNumbersOnline entry of the fleet's list: what the box holding the SIM would list
    alone, but for the port label. Port names repeat across boxes, so the label Onlinesim shows
    names the box too."""
    return ListEntry(
        number=number,
        country_id=country_id,
        operator=operator,
        date_start=date_start,
        port_id=f"{box}/{port}"[:100],
        rent=1 if rent else 0,
    )


class BoxNumbers:
    """Stores this box's sellable numbers in PostgreSQL when they change (:meth:`run`).

    :attr:`stored` is what PostgreSQL has for this box (as far as this box knows). What the
    box's shipper counts as listed (:meth:`listed`) is that, or, with ``follow_list`` (v2 list
    mode), those of them on the last list Onlinesim accepted from the publishing box, when its
    record is fresh. ``on_stored(numbers)`` is awaited with the numbers that became listed
    (their held SMS can go out now)."""

    def __init__(
        self,
        store: ClusterStore,
        entries: Callable[[], list[NumberEntry]],
        *,
        on_stored: Callable[[list[str]], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        startup_grace: float = STARTUP_GRACE,
        follow_list: bool = False,
    ) -> None:
        self._store = store
        self._entries = entries
        self._on_stored = on_stored
        self._clock = clock
        self._sleep = sleep
        self._grace_until = clock() + startup_grace
        self._follow_list = follow_list
        self._last: list[NumberEntry] | None = None  # stored as is; None: nothing yet
        self.stored: frozenset[str] = frozenset()
        # This box's numbers on the publisher's fresh record (None: no fresh record).
        self.on_list: frozenset[str] | None = None
        self._listed: frozenset[str] = frozenset()
        self._unreleased: frozenset[str] = frozenset()  # listed; their held SMS not released
        self.failing = False
        self.attempts = 0  # round trips to PostgreSQL, failed or not

    def listed(self) -> frozenset[str]:
        return self._listed

    async def store_once(self) -> bool:
        """Store the numbers if they changed, then (``follow_list``) read which of them the
        accepted list has; False when PostgreSQL failed (logged once)."""
        what = "store the numbers"
        try:
            await self._store_changes()
            if self._follow_list:
                what = "read the fleet's accepted list for the numbers"
                self.attempts += 1
                self.on_list = await self._store.fleet_listed(RECORD_FRESH)
        except ClusterUnavailable as exc:
            self._listed &= self.stored  # a number withdrawn is unlisted at once, whatever
            if not self.failing:
                LOGGER.error(
                    "cluster: cannot %s of box %s: %s (retrying every %.0f s)",
                    what,
                    self._store.box,
                    exc,
                    OUTAGE_RETRY,
                )
            self.failing = True
            return False
        listed = self.stored if self.on_list is None else self.stored & self.on_list
        # Listed before the release is queued: a batch the shipper takes after this sees
        # them listed, and one it took before runs (holds) before the release (one queue).
        release = sorted((listed - self._listed) | (self._unreleased & listed))
        self._listed, self._unreleased = listed, frozenset(release)
        if release and self._on_stored is not None:
            try:
                await self._on_stored(release)
            except JournalError as exc:
                # Their held SMS stay held: released again at the next round.
                if not self.failing:
                    LOGGER.error("cluster: numbers listed, held SMS not released: %s", exc)
                self.failing = True
                return False
        self._unreleased = frozenset()
        if self.failing:
            LOGGER.warning("cluster: numbers of box %s stored again", self._store.box)
        self.failing = False
        return True

    async def _store_changes(self) -> None:
        entries = self._entries()
        if entries == self._last:
            return
        if not entries and self._last is None and self._clock() < self._grace_until:
            return  # ports still coming up: do not withdraw what an earlier run stored
        self.attempts += 1
        await self._store.publish_numbers(entries)
        self._last = entries
        self.stored = frozenset(e.number for e in entries)

    async def run(self) -> None:
        while True:
            ok = await self.store_once()
            await self._sleep(OWN_CHECK if ok else OUTAGE_RETRY)


async def keep_box(
    store: ClusterStore, numbers: BoxNumbers, *, sleep: Sleep = asyncio.sleep
) -> None:
    """A box's part in the cluster: renew its lease and store its numbers, until cancelled; then
    end the lease at once (a clean stop takes its numbers off the fleet's counts and list)."""
    keeper = LeaseKeeper(store, sleep=sleep)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(keeper.run(), name="cluster-lease")
            group.create_task(numbers.run(), name="cluster-numbers")
    finally:
        with contextlib.suppress(ClusterUnavailable):
            await store.leave()


class FleetList:
    """The publisher lock and the fleet's list for this box's v2 publisher.

    :meth:`run` takes the lock when nobody holds it and, while holding it, calls ``on_change``
    (the publisher's ``request``) when this box just took over, when PostgreSQL answers again
    after failing, and when the fleet's list changed. :meth:`entries` is what the publisher
    publishes: the list read from PostgreSQL just now, or None when this box must not publish
    (it does not hold the lock, or the list cannot be read)."""

    def __init__(
        self,
        store: ClusterStore,
        *,
        rent: bool,
        listed: Callable[[], frozenset[str]] = frozenset,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._lock = store.publisher_lock()
        self._clock = clock
        self._again_at: float | None = None  # when to publish once more after a takeover
        self._rent = rent
        self._listed = listed
        self.on_change = on_change
        self._sleep = sleep
        self.ready = False  # the store is open and its schema current (set by the owner)
        self.reachable: bool | None = None  # the last round trip went through (None: none yet)
        self.attempts = 0  # round trips to PostgreSQL, failed or not
        self._digest: str | None = None
        self._holder = False  # this box held the lock at its last look (its role, for the log)
        self._boxes: dict[str, str] = {}  # number -> its box, on the list read last
        self._recorded = False  # this holder recorded an accepted list: renew the record
        # An accepted list not recorded yet (PostgreSQL refused): recorded again by step().
        self._unrecorded: list[tuple[str, str]] | None = None
        self._record_again_at = 0.0
        self._record_failing: str | None = None  # why recording fails (logged once per reason)
        self._republish_wanted = False  # this box's SMS met NO_NUMBER: ask the holder

    @property
    def holding(self) -> bool:
        """Whether this box believes it holds the lock (no round trip)."""
        return self._lock.holding

    def listed(self) -> frozenset[str]:
        """This box's numbers on the fleet's list (what its shipper may deliver SMS for)."""
        return self._listed()

    def standby(self) -> bool:
        """Another box holds the lock and PostgreSQL answered the last look."""
        return self.ready and self.reachable is True and not self._lock.holding

    async def entries(self) -> list[ListEntry] | None:
        """The fleet's list, read now; None when this box must not publish it."""
        if not self.ready or not self._still_holding():
            return None
        self.attempts += 1
        try:
            async with self._store._conn("fleet list") as conn:
                rows = await conn.fetch(FLEET)
        except ClusterUnavailable as exc:
            self._down(exc)
            return None
        # Read, then still the holder: no other box published since the read began.
        if not await self._lock.held():
            self._lost()
            return None
        self._up()
        self._boxes = {r["number"]: r["box"] for r in rows}
        return [
            list_entry(
                r["box"],
                r["port"],
                r["number"],
                r["country_id"],
                r["operator_code"],
                r["date_start"],
                self._rent,
            )
            for r in rows
        ]

    async def published(self, entries: list[ListEntry]) -> None:
        """Onlinesim accepted ``entries`` (the list :meth:`entries` gave): record it, so each
        box delivers SMS for its numbers on it; never raises (see :meth:`_record`)."""
        if not self._lock.holding:
            return
        self._unrecorded = [
            (self._boxes[e.number], e.number) for e in entries if e.number in self._boxes
        ]
        await self._record()

    async def _record(self) -> None:
        """Record the accepted list not recorded yet; never raises. A failure keeps the lock
        (the list Onlinesim has is this box's) and is tried again by :meth:`step`, at most
        every OUTAGE_RETRY; meanwhile the record is the previous one, stale after
        RECORD_FRESH (then a stored number counts as listed)."""
        rows = self._unrecorded
        if rows is None:
            return
        self.attempts += 1
        try:
            self._recorded = await self._lock.record(rows)
        except Exception as exc:  # noqa: BLE001 - the publisher loop must go on whatever
            self._recorded = False
            self._record_again_at = self._clock() + OUTAGE_RETRY
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._record_failing:
                LOGGER.error(
                    "cluster: box %s cannot record the list Onlinesim accepted (%s); the boxes"
                    " hold SMS of numbers not on the last recorded list, and after %.0f s count"
                    " their stored numbers as listed",
                    self._store.box,
                    reason,
                    RECORD_FRESH,
                )
            self._record_failing = reason
            return
        self._unrecorded = None
        if self._record_failing is not None:
            LOGGER.warning("cluster: box %s records the accepted list again", self._store.box)
            self._record_failing = None

    def ask_republish(self) -> None:
        """An SMS of this box met NO_NUMBER for a number it counts as listed: the holder (this
        box, or another one asked through PostgreSQL at the next step) publishes again."""
        if self._lock.holding:
            self._request()
        else:
            self._republish_wanted = True

    async def step(self) -> float:
        """One round (take the lock, or check it and the list); the seconds until the next."""
        if not self.ready:
            return ACQUIRE_INTERVAL
        try:
            if not self._still_holding():
                self.attempts += 1
                if not await self._lock.try_acquire():
                    if self._republish_wanted:
                        self.attempts += 1
                        await self._store.ask_republish()
                        self._republish_wanted = False
                    self._up()
                    return ACQUIRE_INTERVAL
                LOGGER.info("cluster: box %s publishes the fleet's v2 number list", self._store.box)
                self._holder = True
                self._recorded = False  # the record is the previous holder's until we publish
                self._unrecorded = None
                self._again_at = self._clock() + TAKEOVER_AGAIN
                self._up()
                self._digest = None
            else:
                self.attempts += 1
                if not await self._lock.held():
                    self._lost()
                    return ACQUIRE_INTERVAL
            self.attempts += 1
            async with self._store._conn("fleet digest") as conn:
                digest = str(await conn.fetchval(FLEET_DIGEST))
            if self._unrecorded is not None and self._clock() >= self._record_again_at:
                await self._record()
            asked = False
            if self._recorded:
                self.attempts += 1
                asked = await self._lock.touch()  # a lost lock shows at the next look
        except ClusterUnavailable as exc:
            self._down(exc)
            return OUTAGE_RETRY
        self._up()
        again = self._again_at is not None and self._clock() >= self._again_at
        if again:
            self._again_at = None
        if digest != self._digest or again or asked:
            self._digest = digest
            self._request()
        return FLEET_POLL

    async def run(self) -> None:
        try:
            while True:
                await self._sleep(await self.step())
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the lock up (a stop): another box takes over at its next try."""
        self._holder = False
        await self._lock.release()

    def _request(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _still_holding(self) -> bool:
        """Whether the lock's connection is open; says so once when it closed."""
        if self._lock.holding:
            return True
        if self._holder:
            self._lost()
        return False

    def _lost(self) -> None:
        self._digest = None
        self._holder = False
        LOGGER.warning(
            "cluster: box %s stops publishing the fleet's v2 list: the connection holding its"
            " publisher lock failed",
            self._store.box,
        )

    def _down(self, exc: ClusterUnavailable) -> None:
        if self.reachable is not False:
            if self._holder:
                LOGGER.error(
                    "cluster: %s; box %s stops publishing the fleet's v2 list until PostgreSQL"
                    " answers (a list read before could be stale; Onlinesim keeps the last one)",
                    exc,
                    self._store.box,
                )
            else:
                LOGGER.error(
                    "cluster: %s; box %s cannot take over publishing the v2 list until"
                    " PostgreSQL answers (retrying every %.0f s)",
                    exc,
                    self._store.box,
                    OUTAGE_RETRY,
                )
        self.reachable = False
        self._digest = None  # publish afresh once PostgreSQL answers

    def _up(self) -> None:
        if self.reachable is False:
            LOGGER.warning("cluster: PostgreSQL answers box %s again", self._store.box)
        self.reachable = True


class ClusterV2:
    """What a v2 box runs for the cluster: its lease and numbers (:func:`keep_box`) and, in
    ``list`` mode, its part in publishing the fleet's list (:attr:`fleet`, which the box's
    publisher reads)."""

    def __init__(
        self,
        store: ClusterStore,
        numbers: BoxNumbers,
        fleet: FleetList | None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.numbers = numbers
        self.fleet = fleet
        self._sleep = sleep
        self.migrate_attempts = 0

    @classmethod
    def build(
        cls,
        store: ClusterStore,
        ports: Callable[[], Iterable[PortInfo]],
        *,
        list_mode: bool,
        rent: bool,
        hold: float = 0.0,
        on_stored: Callable[[list[str]], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        startup_grace: float = STARTUP_GRACE,
    ) -> ClusterV2:
        def entries() -> list[NumberEntry]:
            return own_entries(ports(), hold=hold, now=clock())

        numbers = BoxNumbers(
            store,
            entries,
            on_stored=on_stored,
            clock=clock,
            sleep=sleep,
            startup_grace=startup_grace,
            follow_list=list_mode,
        )
        fleet = None
        if list_mode:
            fleet = FleetList(store, rent=rent, listed=numbers.listed, clock=clock, sleep=sleep)
        return cls(store, numbers, fleet, sleep=sleep)

    @classmethod
    def from_config(
        cls, cfg: Config, ports: Callable[[], Iterable[PortInfo]], journal: Journal
    ) -> ClusterV2:
        """A v2 box's cluster part as its configuration says (``cfg.cluster`` is set)."""
        assert cfg.cluster is not None
        store = ClusterStore(cfg.cluster.database, cfg.cluster.box_name, lease=cfg.cluster.lease)
        return cls.build(
            store,
            ports,
            list_mode=cfg.upstream.numbers_mode == "list",
            rent=cfg.upstream.rent,
            hold=cfg.modems.unregistered_hold,
            on_stored=journal.release_held,
        )

    async def migrate(self) -> None:
        """Bring the schema up to date, waiting for PostgreSQL as long as it takes."""
        failing = False
        while True:
            self.migrate_attempts += 1
            try:
                await self.store.migrate()
            except ClusterUnavailable as exc:
                if not failing:
                    LOGGER.error(
                        "cluster: %s; box %s waits for PostgreSQL (retrying every %.0f s)",
                        exc,
                        self.store.box,
                        OUTAGE_RETRY,
                    )
                failing = True
                await self._sleep(OUTAGE_RETRY)
                continue
            if failing:
                LOGGER.warning("cluster: PostgreSQL answers box %s", self.store.box)
            return

    async def run(self) -> None:
        async with self.store:
            await self.migrate()
            async with asyncio.TaskGroup() as group:
                group.create_task(keep_box(self.store, self.numbers, sleep=self._sleep))
                if self.fleet is not None:
                    self.fleet.ready = True
                    group.create_task(self.fleet.run(), name="cluster-fleet-list")
