"""Leases, LISTEN/NOTIFY and the publisher lock: what happens when boxes come and go."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import asyncpg

from muxd.cluster.notify import PublisherLock, listen
from muxd.cluster.store import ClusterStore
from tests.cluster.helpers import entry, wait_until

# A short lease so the test sees it run out; the default is 15 s.
SHORT_LEASE = 2.0
# Scheduling and polling on a loaded machine (a lease twice too long would still fail).
SLACK = 1.0
# LISTEN/NOTIFY: a new operation reaches its box within this.
NOTIFY_LIMIT = 1.0

HOLD_LOCK_SCRIPT = """
import asyncio, sys
from muxd.cluster.notify import PublisherLock
from muxd.cluster.store import ClusterStore

async def main():
    async with ClusterStore(sys.argv[1], "holder") as store:
        lock = PublisherLock(store)
        print(await lock.try_acquire(), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_dead_box_leaves_live_numbers_within_its_lease(
    dsn: str, store: ClusterStore
) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    async with ClusterStore(dsn, "b", lease=SHORT_LEASE) as b:
        left = await b.heartbeat()
        assert 0 < left <= SHORT_LEASE
        await b.publish_numbers([entry("+4915100000002")])
        renewed_at = time.monotonic()
        assert {n.box for n in await store.live_numbers()} == {"a", "b"}
        # b stops renewing (it died): its number goes, a's stays.

        async def b_gone() -> bool:
            return {n.box for n in await store.live_numbers()} == {"a"}

        await wait_until(b_gone)
        assert time.monotonic() - renewed_at <= SHORT_LEASE + SLACK
        assert await store.reserve(country="germany", operator="any", service="vk") is not None
        assert await store.reserve(country="germany", operator="any", service="vk") is None
        # b comes back: its numbers count again as soon as it renews.
        await b.heartbeat()
        assert {n.box for n in await store.live_numbers()} == {"a", "b"}
        boxes = {s.name: s for s in await store.boxes()}
        assert boxes["b"].live
        assert boxes["b"].numbers == 1
        await b.leave()
        assert not {s.name: s for s in await store.boxes()}["b"].live


async def test_new_operations_are_announced_to_the_box_holding_the_sim(
    dsn: str, store: ClusterStore
) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    got: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
    listener = await store.listen("a", lambda aid: got.put_nowait((time.monotonic(), aid)))
    others: list[int] = []
    other = await listen(store, "b", others.append)
    try:
        async with ClusterStore(dsn, "b") as b:  # another box answers the GET_NUMBER
            sent = time.monotonic()
            op = await b.reserve(country="germany", operator="any", service="vk")
            assert op is not None
            assert op.box == "a"
        arrived, aid = await asyncio.wait_for(got.get(), NOTIFY_LIMIT)
        assert aid == op.activation_id
        assert arrived - sent < NOTIFY_LIMIT
        assert [o.activation_id for o in await store.open_operations("a")] == [aid]
        assert others == []
    finally:
        await listener.close()
        await other.close()
    assert listener.lost.is_set()


async def test_listener_notices_its_connection_dying(store: ClusterStore) -> None:
    listener = await listen(store, "a", lambda aid: None)
    async with store._conn("test") as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'"
        )
    await asyncio.wait_for(listener.lost.wait(), 5.0)
    await listener.close()


async def test_publisher_lock_is_taken_over_when_its_connection_dies(
    dsn: str, store: ClusterStore
) -> None:
    async with ClusterStore(dsn, "b") as b:
        mine, theirs = store.publisher_lock(), b.publisher_lock()
        assert await mine.try_acquire()
        assert await mine.try_acquire()  # holding already: still ours
        assert not await theirs.try_acquire()
        assert await mine.held()
        # The holder's connection is killed (as a network cut would, once keepalive notices).
        async with b._conn("test") as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
            )
        assert killed == 1
        assert not await mine.held()
        assert not mine.holding
        assert await theirs.try_acquire()
        assert not await mine.try_acquire()
        await theirs.release()
        assert await mine.try_acquire()
        await mine.release()


async def test_publisher_lock_checked_twice_at_once_stays_held(
    dsn: str, store: ClusterStore
) -> None:
    # The holder's fleet loop and its publisher both ask, on the one connection holding it.
    async with ClusterStore(dsn, "b") as b:
        mine, theirs = store.publisher_lock(), b.publisher_lock()
        assert await mine.try_acquire()
        assert await asyncio.gather(mine.held(), mine.held(), mine.try_acquire()) == [True] * 3
        assert mine.holding
        assert not await theirs.try_acquire()
        await mine.release()


async def test_publisher_lock_is_taken_over_when_its_holder_is_killed(
    dsn: str, store: ClusterStore
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK_SCRIPT, dsn, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30.0)
        assert line.strip() == b"True"
        lock = PublisherLock(store)
        assert not await lock.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)
        took = await wait_until(lock.try_acquire)
        assert took < 5.0
        assert await lock.held()
        await lock.release()
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


async def test_lock_key_is_a_session_lock_released_by_disconnect(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        from muxd.cluster.notify import PUBLISHER_LOCK

        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", PUBLISHER_LOCK)
    finally:
        await conn.close()
    async with ClusterStore(dsn, "a") as s:
        lock = PublisherLock(s)
        assert await lock.try_acquire()
        await lock.release()
