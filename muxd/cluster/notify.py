"""Dedicated connections of a box: LISTEN for its new operations, and the v2 publisher lock.

Both live outside the pool on purpose: a LISTEN and a session advisory lock belong to one
connection, and die with it. That is the point of the publisher lock: when the box holding it
dies (its process killed, its connection dropped, its network gone, which the server's TCP
keepalive notices within seconds), PostgreSQL releases the lock and another box takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from muxd.cluster.records import ClusterUnavailable, channel
from muxd.cluster.store import UNAVAILABLE, ClusterStore

LOGGER = logging.getLogger(__name__)

# An arbitrary 64-bit key of the session advisory lock that lets one box publish the fleet's
# v2 number list ("muxdpubl").
PUBLISHER_LOCK: Final = 0x6D7578647075626C
# Checking that the lock's connection still answers (and so still holds the lock).
PING_TIMEOUT: Final = 2.0


def _held_here(key: str) -> str:
    """SQL: this session holds the advisory lock whose 64-bit key is the parameter ``key``."""
    return (
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
        " AND pid = pg_backend_pid() AND granted"
        f" AND ((classid::bigint << 32) | objid::bigint) = {key})"
    )


_MINE = f"SELECT {_held_here('$1')}"
_RECORDED_BY = (
    "INSERT INTO fleet_published (id, box, at) VALUES (1, $1, now())"
    " ON CONFLICT (id) DO UPDATE SET box = excluded.box, at = excluded.at"
)

# Renews the record and takes a box's request for a new publication (its old value).
_TOUCH = (
    "WITH old AS (SELECT republish FROM fleet_published WHERE id = 1 AND box = $1 FOR UPDATE)"
    " UPDATE fleet_published p SET at = now(), republish = false FROM old"
    f" WHERE p.id = 1 AND {_held_here('$2')}"
    " RETURNING old.republish"
)

# callback(activation_id): a new operation whose SMS this box pushes. Called on the event loop;
# it must not block (put the id on a queue).
OperationCallback = Callable[[int], None]


class Listener:
    """LISTEN on one box's channel; each notification calls ``callback(activation_id)``.

    The connection can die (PostgreSQL restarted): :attr:`lost` is set then, and the owner
    opens a new listener after reconciling what it missed through
    :meth:`ClusterStore.open_operations` (notifications are not queued for absent listeners).
    """

    def __init__(
        self, conn: asyncpg.Connection[asyncpg.Record], box: str, callback: OperationCallback
    ) -> None:
        self._conn = conn
        self.box = box
        self._callback = callback
        self.lost = asyncio.Event()

    def _on_notify(self, conn: Any, pid: int, chan: str, payload: object) -> None:
        try:
            activation_id = int(str(payload))
        except ValueError:
            LOGGER.warning("cluster: unreadable notification on %s: %r", chan, payload)
            return
        try:
            self._callback(activation_id)
        except Exception:  # nothing raises out of the driver's callback
            LOGGER.exception("cluster: new-operation callback failed")

    def _on_terminate(self, conn: Any) -> None:
        self.lost.set()

    async def close(self) -> None:
        self.lost.set()
        with contextlib.suppress(*UNAVAILABLE, TimeoutError):
            async with asyncio.timeout(PING_TIMEOUT):
                await self._conn.close()
        self._conn.terminate()


async def listen(store: ClusterStore, box: str, callback: OperationCallback) -> Listener:
    """Start listening for new operations whose SMS ``box`` pushes."""
    conn = await store.connect()
    listener = Listener(conn, box, callback)
    try:
        async with asyncio.timeout(store.call_timeout):
            await conn.add_listener(channel(box), listener._on_notify)
    except (TimeoutError, *UNAVAILABLE) as exc:
        conn.terminate()
        raise ClusterUnavailable(f"listen: {type(exc).__name__}: {exc}") from exc
    conn.add_termination_listener(listener._on_terminate)
    return listener


class PublisherLock:
    """The session advisory lock that makes one box at a time publish the v2 list.

    :meth:`try_acquire` never waits for the holder; :meth:`held` pings the lock's connection
    and, when it does not answer, drops it (so the lock is surely released) and says False:
    the caller stops publishing at once. Calls take turns on the connection (the fleet's loop
    and the publisher both ask): two at once on one connection would fail the second, which
    would read as the connection failing and give the lock up.
    """

    def __init__(self, store: ClusterStore) -> None:
        self._store = store
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._turn = asyncio.Lock()

    @property
    def holding(self) -> bool:
        """What this side believes (no round trip); :meth:`held` checks."""
        return self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this box holds it now."""
        async with self._turn:
            if self.holding:
                return await self._held()
            return await self._acquire()

    async def _acquire(self) -> bool:
        conn = await self._store.connect()
        try:
            async with asyncio.timeout(self._store.call_timeout):
                got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", PUBLISHER_LOCK))
        except (TimeoutError, *UNAVAILABLE) as exc:
            conn.terminate()
            raise ClusterUnavailable(f"publisher lock: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled (a stop, a supervised restart) with the query on its way: the server may
            # still grant the lock to this connection, which nobody would hold any more; closing
            # it gives the lock back (else no box publishes until this process ends).
            conn.terminate()
            raise
        if not got:
            conn.terminate()
            return False
        self._conn = conn
        return True

    async def held(self) -> bool:
        """Whether the lock is still ours: its connection answers and holds it."""
        async with self._turn:
            return await self._held()

    async def _held(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                mine = await conn.fetchval(_MINE, PUBLISHER_LOCK)
        except (TimeoutError, *UNAVAILABLE):
            mine = False
        if not mine:
            self._drop()
        return bool(mine)

    async def record(self, listed: list[tuple[str, str]]) -> bool:
        """Record the list Onlinesim accepted, as (box, number) pairs, replacing the last one,
        on the lock's own connection and only while it holds the lock (a holder that lost it
        never overwrites its successor's record). False: not the holder (any more)."""
        async with self._turn:
            conn = self._conn
            if conn is None:
                return False
            try:
                async with asyncio.timeout(self._store.call_timeout):
                    # A session lock held by this very connection: nobody else can take it
                    # while the connection lives, so checking it first is enough.
                    if not await conn.fetchval(_MINE, PUBLISHER_LOCK):
                        self._drop()
                        return False
                    async with conn.transaction():
                        await self._replace(conn, listed)
            except TimeoutError as exc:
                self._drop()  # a statement may still run: the connection, and the lock, go
                raise ClusterUnavailable(f"record the list: {type(exc).__name__}: {exc}") from exc
            except UNAVAILABLE as exc:
                # A refusal on a live connection (a read-only server) keeps the lock: dropping
                # it would make the boxes take turns publishing the list again and again.
                if conn.is_closed():
                    self._drop()
                raise ClusterUnavailable(f"record the list: {type(exc).__name__}: {exc}") from exc
            return True

    async def _replace(
        self, conn: asyncpg.Connection[asyncpg.Record], listed: list[tuple[str, str]]
    ) -> None:
        await conn.execute("DELETE FROM fleet_listed")
        await conn.execute(
            "INSERT INTO fleet_listed (box, number)"
            " SELECT DISTINCT ON (n) b, n FROM unnest($1::text[], $2::text[]) AS u(b, n)",
            [box for box, _ in listed],
            [number for _, number in listed],
        )
        await conn.execute(_RECORDED_BY, self._store.box)

    async def touch(self) -> bool:
        """Renew the record's time while this box holds the lock (a record nobody renews is
        stale: the publisher died, or is a muxd that does not record). True when a box asked
        for a new publication meanwhile (:meth:`ClusterStore.ask_republish`)."""
        async with self._turn:
            conn = self._conn
            if conn is None:
                return False
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    asked = await conn.fetchval(_TOUCH, self._store.box, PUBLISHER_LOCK)
            except TimeoutError:
                self._drop()
                return False
            except UNAVAILABLE:
                if conn.is_closed():
                    self._drop()
                return False
            return asked is True

    async def release(self) -> None:
        """Give the lock up (closing its connection releases it)."""
        async with self._turn:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            with contextlib.suppress(*UNAVAILABLE, TimeoutError):
                async with asyncio.timeout(PING_TIMEOUT):
                    await conn.close()
            conn.terminate()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
