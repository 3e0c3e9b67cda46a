"""v2 list mode across boxes: one box at a time publishes the whole fleet's list.

Real parts: a throwaway PostgreSQL, the Onlinesim stand-in (a real aiohttp server recording
every call), real journals, the real publisher; each box is its own store, client and loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from muxd.cluster.notify import PUBLISHER_LOCK
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres
from muxd.cluster.v2list import (
    ACQUIRE_INTERVAL,
    FLEET_POLL,
    OUTAGE_RETRY,
    RECORD_FRESH,
    TAKEOVER_AGAIN,
    BoxNumbers,
    ClusterV2,
    FleetList,
    own_entries,
)
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal
from muxd.upstream.publisher import NumbersPublisher, sellable_entries
from muxd.upstream.v2 import V2Client
from muxd_sim.onlinesim import Onlinesim, serve
from tests.cluster.conftest import fresh_database
from tests.cluster.helpers import wait_until

KEY = "cluster-key"
DEBOUNCE = 0.05
# A takeover after the holder's connection died: the next try of the other box (every
# ACQUIRE_INTERVAL), then its first publication (debounce) and the request itself.
TAKEOVER_BOUND = ACQUIRE_INTERVAL + FLEET_POLL + 2.0
HOUR = 3600.0
# When the test SIMs came up in their ports (wall time, UNIX seconds).
SINCE = 1_750_000_000.0


def port(box: int, i: int) -> PortInfo:
    return PortInfo(
        name=f"port{i:03d}",  # the same port names on every box
        path=f"/dev/x{i}",
        status=PortStatus.READY,
        iccid=f"89701{box:02d}{i:012d}",
        number=f"+79{box:02d}{i:07d}",
        operator=25001,
        country_id=7,
        registered=True,
        since=SINCE + 100 * box + i,
    )


@dataclass
class Box:
    name: str
    ports: dict[str, PortInfo]
    cluster: ClusterV2
    publisher: NumbersPublisher
    calls: list[str] = field(default_factory=list)  # v2 endpoints this box called
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def fleet(self) -> FleetList:
        assert self.cluster.fleet is not None
        return self.cluster.fleet

    def sent_lists(self) -> int:
        return self.calls.count("sendNumbersOnline")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[tuple[Onlinesim, str]]:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    try:
        yield stub, f"http://127.0.0.1:{served.port}"
    finally:
        await served.runner.cleanup()


@contextlib.asynccontextmanager
async def box(
    name: str, index: int, count: int, dsn: str, url: str, tmp: Path, *, lease: float = 15.0
) -> AsyncIterator[Box]:
    ports = {str(i): port(index, i) for i in range(count)}
    journal = await Journal.open(tmp / name)
    calls: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            client = V2Client(http, url, KEY, observer=lambda ep, _r, _s: calls.append(ep))
            store = ClusterStore(dsn, name, lease=lease, call_timeout=1.0, connect_timeout=0.5)
            cluster = ClusterV2.build(
                store, lambda: ports.values(), list_mode=True, rent=False, startup_grace=0.0
            )
            publisher = NumbersPublisher(
                client,
                lambda: ports.values(),
                asyncio.Event(),
                journal,
                interval=HOUR,
                rent=False,
                debounce=DEBOUNCE,
                startup_grace=HOUR,
                fleet=cluster.fleet,
            )
            assert cluster.fleet is not None
            cluster.fleet.on_change = publisher.request
            b = Box(name, ports, cluster, publisher, calls)
            b.tasks = [
                asyncio.create_task(cluster.run(), name=f"{name}-cluster"),
                asyncio.create_task(publisher.run(), name=f"{name}-publisher"),
            ]
            try:
                yield b
            finally:
                await b.stop()
    finally:
        await journal.close()


def numbers(*boxes: Box) -> set[str]:
    return {p.number for b in boxes for p in b.ports.values() if p.number is not None}


async def holder_pid(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            PUBLISHER_LOCK,
        )
        assert pid is not None
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        return int(pid)
    finally:
        await conn.close()


async def test_only_the_holder_publishes_the_union_and_a_dead_holder_is_replaced(
    dsn: str, tmp_path: Path
) -> None:
    async with (
        stand_in() as (stub, url),
        box("a", 1, 3, dsn, url, tmp_path) as a,
        box("b", 2, 4, dsn, url, tmp_path) as b,
    ):
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a, b), timeout=10.0)
        assert [x.fleet.holding for x in (a, b)].count(True) == 1
        holder, other = (a, b) if a.fleet.holding else (b, a)
        await wait_until(lambda: _published(holder))  # its client saw the answer too
        assert other.sent_lists() == 0  # never called sendNumbersOnline at all
        # The port label names the box: both boxes have a port000.
        assert stub.numbers[a.ports["0"].number or ""].port_id == "a/port000"
        assert stub.numbers[b.ports["0"].number or ""].port_id == "b/port000"
        assert stub.numbers[b.ports["0"].number or ""].operator == 25001

        # Each box's shipper counts its own numbers as listed, once it has read the accepted
        # list from PostgreSQL (every OWN_CHECK, real time).
        async def own_listed() -> bool:
            return all(x.publisher.listed_numbers() == numbers(x) for x in (a, b))

        await wait_until(own_listed)

        # The box on standby proves it reaches Onlinesim with checkWork (its /readyz), never
        # with a list.
        other.publisher.request()
        await wait_until(lambda: _called(other, "checkWork"))
        assert other.sent_lists() == 0

        # A change on the box that does not publish reaches the list through the holder.
        del other.ports["1"]
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a, b), timeout=10.0)
        assert other.sent_lists() == 0

        # The holder's connection dies (and the lock with it), then the box stops.
        await holder_pid(dsn)
        started = time.monotonic()
        await holder.stop()
        await wait_until(lambda: _published(other), limit=TAKEOVER_BOUND)
        took = time.monotonic() - started
        assert other.fleet.holding
        assert took < TAKEOVER_BOUND
        # The lease of the stopped box ended with its stop: the list is the other box's now.
        await stub.wait_until(lambda: set(stub.numbers) == numbers(other), timeout=10.0)


async def test_a_fleet_list_entry_is_what_its_box_lists_alone(dsn: str, tmp_path: Path) -> None:
    async with (
        stand_in() as (stub, url),
        box("a", 1, 2, dsn, url, tmp_path) as a,
        box("b", 2, 3, dsn, url, tmp_path) as b,
    ):
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a, b), timeout=10.0)
        holder = a if a.fleet.holding else b
        fleet = {e.number: e for e in await holder.fleet.entries() or []}
        assert set(fleet) == numbers(a, b)
        for x in (a, b):
            for alone in sellable_entries(x.ports.values(), rent=False):
                assert alone.operator is not None
                assert alone.date_start is not None
                # The same entry, but for the port label, which names the box.
                labelled = msgspec.structs.replace(alone, port_id=f"{x.name}/{alone.port_id}")
                assert fleet[alone.number] == labelled
                got = stub.numbers[alone.number]
                assert (got.operator, got.date_start) == (alone.operator, alone.date_start)

        # The SIM in one of b's ports came up again: nothing else changed, and the list says
        # since when (b stores it, the holder sees the change and publishes).
        number = b.ports["1"].number or ""
        b.ports["1"] = dataclasses.replace(b.ports["1"], since=SINCE + 7)

        async def listed_since() -> bool:
            return stub.numbers[number].date_start == int(SINCE + 7)

        await wait_until(listed_since)


async def _published(b: Box) -> bool:
    return b.sent_lists() > 0


async def _called(b: Box, endpoint: str) -> bool:
    return endpoint in b.calls


async def _sent_more(b: Box, than: int) -> bool:
    return b.sent_lists() > than


async def test_a_box_leaving_leaves_the_list(dsn: str, tmp_path: Path) -> None:
    async with stand_in() as (stub, url), box("a", 1, 2, dsn, url, tmp_path) as a:
        async with box("b", 2, 2, dsn, url, tmp_path) as b:
            await stub.wait_until(lambda: set(stub.numbers) == numbers(a, b), timeout=10.0)
            assert a.fleet.holding or b.fleet.holding
        # b stopped; whichever box published, the list is a's numbers alone soon after.
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a), timeout=15.0)


async def test_postgres_down_no_list_from_stale_data(
    private_postgres: ThrowawayPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd.cluster.v2list")
    dsn = await fresh_database(private_postgres)
    async with stand_in() as (stub, url), box("a", 1, 3, dsn, url, tmp_path) as a:
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a), timeout=10.0)
        await wait_until(lambda: _published(a))
        sent = a.sent_lists()
        private_postgres.stop("immediate")
        # A number goes; the list the box could build from what it read before is stale.
        del a.ports["2"]
        a.publisher.request()
        await wait_until(_unreachable(a.fleet), limit=10.0)
        attempts = a.fleet.attempts
        await wait_until(_more_attempts(a.fleet, attempts + 2), limit=3 * OUTAGE_RETRY)
        assert await a.fleet.entries() is None
        assert a.sent_lists() == sent  # nothing published while PostgreSQL is down
        assert len(stub.numbers) == 3  # the last list stays upstream, the gone number too
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("stops publishing the fleet's v2 list" in m for m in said) == 1, said
        # Said once: one line per state change of each loop, however many attempts failed.
        assert len({m[:40] for m in said}) == len(said), said
        private_postgres.start()
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a), timeout=20.0)
        await wait_until(lambda: _sent_more(a, sent))
        assert any("answers box a again" in r.getMessage() for r in caplog.records)


def _unreachable(fleet: FleetList):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return fleet.reachable is False

    return check


def _more_attempts(fleet: FleetList, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return fleet.attempts >= n

    return check


class VirtualTime:
    """An injected sleep that advances a clock of its own instantly, up to ``end``."""

    def __init__(self, end: float) -> None:
        self.now = 0.0
        self.end = end
        self.done = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay > 0
        self.now += delay
        if self.now >= self.end:
            self.done.set()
            await asyncio.Event().wait()  # parked until cancelled
        await asyncio.sleep(0)


async def run_for_an_hour(vt: VirtualTime, coro: object) -> None:
    task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(vt.done.wait(), 60.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_attempts_in_an_hour_long_outage_are_bounded(
    private_postgres: ThrowawayPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd.cluster.v2list")
    dsn = await fresh_database(private_postgres)
    async with ClusterStore(dsn, "a", call_timeout=0.5, connect_timeout=0.5) as store:
        await store.migrate()
        private_postgres.stop("immediate")  # every attempt is refused at once
        bound = HOUR / OUTAGE_RETRY + 1

        vt = VirtualTime(HOUR)
        fleet = FleetList(store, rent=False, sleep=vt.sleep)
        fleet.ready = True
        await run_for_an_hour(vt, fleet.run())
        assert 0 < fleet.attempts <= bound

        vt = VirtualTime(HOUR)
        ports = {"0": port(1, 0)}
        mine = BoxNumbers(
            store,
            lambda: own_entries(ports.values()),
            clock=vt.clock,
            sleep=vt.sleep,
            startup_grace=0.0,
        )
        await run_for_an_hour(vt, mine.run())
        assert 0 < mine.attempts <= bound

        vt = VirtualTime(HOUR)
        cluster = ClusterV2(store, mine, None, sleep=vt.sleep)
        await run_for_an_hour(vt, cluster.migrate())
        assert 0 < cluster.migrate_attempts <= bound
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3, errors  # one line per loop, not one per attempt


async def test_a_new_holder_publishes_again_after_a_late_list_could_have_landed(
    store: ClusterStore,
) -> None:
    """The previous holder's last list may still be on the wire when the lock changes hands:
    the new holder publishes once more after the longest such request could last."""
    vt = VirtualTime(HOUR)
    requests: list[float] = []
    fleet = FleetList(store, rent=False, clock=vt.clock, on_change=lambda: requests.append(vt.now))
    fleet.ready = True
    await fleet.step()  # takes the lock: publish at once
    assert fleet.holding
    assert requests == [0.0]
    vt.now = TAKEOVER_AGAIN - 1
    await fleet.step()
    assert requests == [0.0]  # nothing changed yet
    vt.now = TAKEOVER_AGAIN
    await fleet.step()
    assert requests == [0.0, TAKEOVER_AGAIN]
    vt.now += 60
    await fleet.step()
    assert len(requests) == 2  # once, not on every look
    await fleet.release()


async def test_a_number_of_an_older_box_keeps_its_operator_code(dsn: str, tmp_path: Path) -> None:
    async with stand_in() as (_stub, url), box("a", 1, 2, dsn, url, tmp_path) as a:

        async def holding() -> bool:
            return a.fleet.holding

        await wait_until(holding)
        # A box of the muxd before the operator_code column stores the MCC+MNC as text only.
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO boxes (name, lease_until) VALUES ('old', now() + interval '1 hour')"
            )
            await conn.execute(
                "INSERT INTO numbers (box, number, port, country, country_id, operator, sellable)"
                " VALUES ('old', '+79009990001', 'port000', '7', 7, '25001', true),"
                " ('old', '+79009990002', 'port001', '7', 7, 'unknown', true)"
            )
        finally:
            await conn.close()
        fleet = {e.number: e for e in await a.fleet.entries() or []}
        assert fleet["+79009990001"].operator == 25001
        assert fleet["+79009990002"].operator is None


@contextlib.asynccontextmanager
async def recorded_pair(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Onlinesim, Box, Box]]:
    """Boxes a and b listed, each counting its numbers as listed from the holder's record:
    (the stand-in, the holder, the other box)."""
    async with (
        stand_in() as (stub, url),
        box("a", 1, 2, dsn, url, tmp_path) as a,
        box("b", 2, 2, dsn, url, tmp_path) as b,
    ):
        await stub.wait_until(lambda: set(stub.numbers) == numbers(a, b), timeout=10.0)

        async def both_listed_by_record() -> bool:
            return all(
                x.cluster.numbers.on_list == frozenset(numbers(x)) == x.publisher.listed_numbers()
                for x in (a, b)
            )

        await wait_until(both_listed_by_record)
        yield (stub, a, b) if a.fleet.holding else (stub, b, a)


async def test_a_number_counts_as_listed_once_a_list_with_it_was_accepted(
    dsn: str, tmp_path: Path
) -> None:
    async with recorded_pair(dsn, tmp_path) as (stub, holder, other):
        # Onlinesim refuses the next list. A SIM that comes up on the other box is stored in
        # PostgreSQL at once, but it is not on Onlinesim's list: its SMS must be held, not sent
        # to meet NO_NUMBER, so the box does not count it as listed.
        stub.fail_next("sendNumbersOnline", 503)
        index = 1 if other.name == "a" else 2
        other.ports["9"] = port(index, 9)
        new = other.ports["9"].number or ""
        refused = holder.sent_lists()

        async def stored_and_refused_and_read() -> bool:
            return (
                new in other.cluster.numbers.stored
                and holder.sent_lists() >= refused + 1
                and other.cluster.numbers.attempts >= reads + 2
            )

        reads = other.cluster.numbers.attempts
        await wait_until(stored_and_refused_and_read)
        assert new not in stub.numbers
        assert new not in other.publisher.listed_numbers()
        assert other.publisher.listed_numbers() == numbers(other) - {new}

        # The list with it is accepted: the box counts it as listed from the record.
        await stub.wait_until(lambda: new in stub.numbers, timeout=30.0)

        async def listed_now() -> bool:
            return new in other.publisher.listed_numbers()

        await wait_until(listed_now)


async def test_a_record_nobody_renews_is_not_trusted(dsn: str) -> None:
    """A publisher that records nothing (an older muxd) or died: a stored number counts as
    listed, as before the record existed; a renewed record narrows it to the list."""
    async with ClusterStore(dsn, "b", call_timeout=1.0, connect_timeout=0.5) as store:
        await store.migrate()
        await store.heartbeat()
        mine = [port(2, i) for i in range(3)]
        released: list[tuple[list[str], frozenset[str]]] = []

        async def on_stored(numbers_now: list[str]) -> None:
            await asyncio.sleep(0)  # a release is a journal round trip: the shipper runs meanwhile
            released.append((numbers_now, numbers_b.listed()))

        numbers_b = BoxNumbers(
            store,
            lambda: own_entries(mine),
            startup_grace=0.0,
            follow_list=True,
            on_stored=on_stored,
        )
        every = {p.number for p in mine if p.number is not None}
        assert await numbers_b.store_once()
        assert numbers_b.listed() == every  # no record at all
        # Released once listed, and listed before the release (a batch taken meanwhile must
        # not hold them again after the release ran).
        assert released == [(sorted(every), frozenset(every))]
        conn = await asyncpg.connect(dsn)
        try:
            # The list gave mine[1] to box a (it is on the list all the same).
            await conn.execute(
                "INSERT INTO fleet_listed (box, number) VALUES ('b', $1), ('a', $2)",
                mine[0].number,
                mine[1].number,
            )
            stale = datetime.timedelta(seconds=RECORD_FRESH + 60)
            await conn.execute(
                "INSERT INTO fleet_published (id, box, at) VALUES (1, 'a', now() - $1::interval)",
                stale,
            )
            assert await numbers_b.store_once()
            assert numbers_b.on_list is None
            assert numbers_b.listed() == every  # stale: not trusted
            # Dated ahead of the database's clock (its clock stepped back): not trusted either.
            await conn.execute("UPDATE fleet_published SET at = now() + interval '2 hours'")
            assert await numbers_b.store_once()
            assert numbers_b.on_list is None
            await conn.execute("UPDATE fleet_published SET at = now()")
            assert await numbers_b.store_once()
            assert numbers_b.listed() == {mine[0].number, mine[1].number}
        finally:
            await conn.close()


async def test_a_record_that_fails_keeps_the_lock_and_is_tried_again(dsn: str) -> None:
    async with ClusterStore(dsn, "a", call_timeout=1.0, connect_timeout=0.5) as store:
        await store.migrate()
        await store.heartbeat()
        mine = [port(1, i) for i in range(2)]
        await store.publish_numbers(own_entries(mine))
        vt = VirtualTime(HOUR)
        requests: list[int] = []
        fleet = FleetList(store, rent=False, on_change=lambda: requests.append(1), clock=vt.clock)
        fleet.ready = True
        await fleet.step()
        assert fleet.holding
        assert requests == [1]
        listing = await fleet.entries()
        assert listing is not None
        assert len(listing) == 2
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ALTER TABLE fleet_listed RENAME TO fleet_listed_away")
            await fleet.published(listing)  # refused by PostgreSQL: never raises
            assert fleet.holding  # and the lock stays: no other box publishes the list again
            for _ in range(3):
                await fleet.step()
            assert requests == [1]  # nothing asked to publish again
            await conn.execute("ALTER TABLE fleet_listed_away RENAME TO fleet_listed")
            vt.now += OUTAGE_RETRY
            await fleet.step()
            rows = await conn.fetch("SELECT number, box FROM fleet_listed ORDER BY number")
            assert [(r["number"], r["box"]) for r in rows] == sorted(
                (p.number, "a") for p in mine if p.number is not None
            )
            assert await conn.fetchval("SELECT box FROM fleet_published") == "a"
        finally:
            await conn.close()
            await fleet.release()


class FreezingStore(ClusterStore):
    """Stops (SIGSTOP) the server process of each dedicated connection it opens, so that a
    query on it stays unanswered until the test continues it (SIGCONT)."""

    frozen: int | None = None

    async def connect(self) -> asyncpg.Connection[asyncpg.Record]:
        conn = await super().connect()
        self.frozen = conn.get_server_pid()
        os.kill(self.frozen, signal.SIGSTOP)
        return conn


async def test_a_lock_attempt_cancelled_midway_leaves_the_lock_free(dsn: str) -> None:
    async with (
        FreezingStore(dsn, "a", call_timeout=30.0, connect_timeout=5.0) as frozen_store,
        ClusterStore(dsn, "b", call_timeout=1.0, connect_timeout=0.5) as store_b,
    ):
        attempt = asyncio.create_task(frozen_store.publisher_lock().try_acquire())

        async def connected() -> bool:
            return frozen_store.frozen is not None

        await wait_until(connected)
        await asyncio.sleep(0)  # the lock's query is written to the stopped server
        attempt.cancel()  # the box stops (or its cluster tasks restart) meanwhile
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        assert frozen_store.frozen is not None
        os.kill(frozen_store.frozen, signal.SIGCONT)  # the server may grant the lock now
        other = store_b.publisher_lock()

        async def taken_by_another_box() -> bool:
            return await other.try_acquire()

        await wait_until(taken_by_another_box)
        await other.release()


async def test_a_box_whose_number_onlinesim_lacks_has_the_holder_publish_again(
    dsn: str, tmp_path: Path
) -> None:
    async with recorded_pair(dsn, tmp_path) as (stub, holder, other):
        # Onlinesim lost one of the other box's numbers (or an older list landed after the
        # recorded one): the box still counts it as listed, and its SMS meet NO_NUMBER. Twice:
        # a publication of the start-up still on its way could bring it back the first time.
        lost = other.ports["0"].number or ""
        for _ in range(2):
            del stub.numbers[lost]
            sent = holder.sent_lists()
            other.publisher.republish()  # what the shipper does on NO_NUMBER
            await stub.wait_until(lambda: lost in stub.numbers, timeout=ACQUIRE_INTERVAL + 5.0)
            await wait_until(lambda n=sent: _sent_more(holder, n))  # its client saw the answer
        assert other.sent_lists() == 0  # asked through PostgreSQL, never published itself
