"""The cluster's shared state in PostgreSQL: box leases, numbers, v1 operations, sales.

One :class:`ClusterStore` per box, on an asyncpg pool that connects on demand: a box starts
with PostgreSQL down and each call then fails fast. Every call runs under a named timeout;
when PostgreSQL refuses, drops the connection or does not answer in time, the call raises
:class:`ClusterUnavailable` (and the connection it used is discarded), never hangs. What the
store decides it decides in one transaction, by the database's clock (``now()``): a box's
wall clock never decides a lease or an expiry.

GET_NUMBER's reservation is one statement, for one request or a group of requests with the
same criteria: it picks the least recently used fitting numbers ``FOR UPDATE SKIP LOCKED``
(concurrent reservations skip each other's candidates instead of waiting), marks them busy,
inserts the operations, assigns their pushes to the boxes holding the SIMs and notifies those
boxes, all or nothing. FINISH_ACTIVATION is one statement too. The unique index
on open operations per number is the last word: a race it catches is retried with the next
number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

import asyncpg

from muxd import __version__
from muxd.cluster import queries
from muxd.cluster.records import (
    RENT,
    BoxState,
    ClusterError,
    ClusterUnavailable,
    Criteria,
    FinishOutcome,
    LiveNumber,
    NumberEntry,
    Operation,
    check_box_name,
    mask_patterns,
    operation_from_row,
)
from muxd.cluster.schema import SchemaTooNew, current_version, migrate

LOGGER = logging.getLogger(__name__)

# Opening one connection (TCP, authentication, session settings): loopback or LAN takes ms.
CONNECT_TIMEOUT: Final = 2.0
# One call (waiting for a pooled connection, the queries, the commit). GET_NUMBER must be
# answered within 10 s; this leaves the box time to answer "no numbers" when PostgreSQL hangs.
CALL_TIMEOUT: Final = 3.0
# Migrations wait for another box's migrations (a lock), so they get longer.
MIGRATE_TIMEOUT: Final = 30.0
# Giving a connection back to the pool (no reset query is sent, see _no_reset): bounded all
# the same, a connection that does not come back in time is cut.
RELEASE_TIMEOUT: Final = 1.0
# Closing the pool lets calls in flight finish for this long (each takes milliseconds).
CLOSE_TIMEOUT: Final = 2.0
# Connections per box: GET_NUMBER bursts share them (each call holds one for about a ms).
POOL_MAX: Final = 10
# Connections opened ahead once PostgreSQL answers (:meth:`ClusterStore.warm`), so the first
# burst after a start finds them open, their hot statements' types known. Idle connections
# still close after asyncpg's inactivity limit (5 minutes); those in use stay warm.
POOL_WARM: Final = 3
# What the connections opened ahead prepare (asyncpg learns a statement's parameter and result
# types once per connection: a round trip, or an introspection query, on first use otherwise).
# GET_NUMBER: how many times a reservation that lost a race is retried with the next number.
RESERVE_ATTEMPTS: Final = 5
# A single-service reservation lasts 15 minutes; rent operations have no expiry of their own.
RESERVATION: Final = 15 * 60.0
# Server-side TCP keepalive on every connection: a box that vanished from the network has its
# connection (and any session lock it held) dropped after about idle + interval * count.
KEEPALIVE_IDLE: Final = 5
KEEPALIVE_INTERVAL: Final = 2
KEEPALIVE_COUNT: Final = 3

SERVER_SETTINGS: Final = {
    "application_name": "muxd",
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
    "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
    "tcp_keepalives_count": str(KEEPALIVE_COUNT),
}

# What "PostgreSQL is not there" looks like to asyncpg (besides a timeout).
UNAVAILABLE: Final = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, terminated
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.InternalClientError,  # a connection cut mid-exchange
    # A standby after a failover, or a server set read-only: writes fail until the primary is
    # back. Authentication refused (a password changed on the server): the box keeps receiving
    # while an operator fixes it. Either way retried with the loops' floors, never fatal.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from muxd.cluster.notify import Listener, PublisherLock

    Conn = PoolConnectionProxy[asyncpg.Record]


async def _no_reset(conn: object) -> None:
    """Pooled connections keep no session state (no LISTEN, locks or SET: those use dedicated
    connections), so the round trip asyncpg spends resetting one on release is skipped."""


class ClusterStore:
    """One box's handle on the shared state. ``async with`` opens the pool (no connection
    yet) and closes it; :meth:`migrate` brings the schema up to date."""

    def __init__(
        self,
        dsn: str,
        box: str,
        *,
        lease: float = 15.0,
        version: str = __version__,
        pool_max: int = POOL_MAX,
        call_timeout: float = CALL_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        problem = check_box_name(box)
        if problem is not None:
            raise ClusterError(f"box name: {problem}")
        self.dsn = dsn
        self.box = box
        self.lease = lease
        self.version = version
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self._pool_max = pool_max
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._registered = False

    async def open(self) -> None:
        if self._pool is None:
            # min_size=0: no connection now; each call connects on demand (PostgreSQL may be
            # down when the box starts) and keeps what it opened for the next.
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=self._pool_max,
                timeout=self.connect_timeout,
                command_timeout=self.call_timeout,
                server_settings=dict(SERVER_SETTINGS),
                reset=_no_reset,
            )

    async def warm(self, connections: int = POOL_WARM) -> None:
        """Open ``connections`` pooled connections now (at once) instead of on the first
        burst's demand (call it once the schema is migrated). Statements are not prepared
        here: asyncpg caches only what a query prepared itself. Raises ClusterUnavailable."""
        all_open = asyncio.Event()
        opened = 0

        async def hold() -> None:
            nonlocal opened
            async with self._conn("warm"):
                opened += 1
                if opened == connections:
                    all_open.set()
                await all_open.wait()  # each stays in use until all are open: none is reused

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(connections):
                    tg.create_task(hold())
        except* ClusterUnavailable as group:
            raise group.exceptions[0] from None

    async def close(self) -> None:
        """Close the pool: calls in flight get :data:`CLOSE_TIMEOUT` to finish, then their
        connections are cut."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pool.close()
        except (TimeoutError, *UNAVAILABLE):
            pool.terminate()

    async def __aenter__(self) -> ClusterStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> asyncpg.Connection[asyncpg.Record]:
        """A dedicated connection outside the pool (LISTEN, session locks)."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncpg.connect(
                    self.dsn,
                    timeout=self.connect_timeout,
                    command_timeout=self.call_timeout,
                    server_settings=dict(SERVER_SETTINGS),
                )
        except TimeoutError as exc:
            raise ClusterUnavailable(
                f"connect: PostgreSQL did not answer within {self.connect_timeout} s"
            ) from exc
        except UNAVAILABLE as exc:
            raise ClusterUnavailable(f"connect: {_describe(exc)}") from exc

    async def listen(self, box: str, callback: Callable[[int], None]) -> Listener:
        """LISTEN for new operations whose SMS ``box`` pushes (see :mod:`muxd.cluster.notify`)."""
        from muxd.cluster.notify import listen

        return await listen(self, box, callback)

    def publisher_lock(self) -> PublisherLock:
        """The lock that lets one box at a time publish the v2 list (not taken yet)."""
        from muxd.cluster.notify import PublisherLock

        return PublisherLock(self)

    @contextlib.asynccontextmanager
    async def _conn(self, what: str, timeout: float | None = None) -> AsyncIterator[Conn]:
        """A pooled connection for one call, under its deadline; a failure discards it."""
        if self._pool is None:
            raise RuntimeError("ClusterStore used before open()")
        pool = self._pool
        limit = self.call_timeout if timeout is None else timeout
        conn: Conn | None = None
        try:
            async with asyncio.timeout(limit):
                conn = await pool.acquire()
                yield conn
        except TimeoutError as exc:
            _discard(conn)  # a query may still be running: never reuse the connection
            raise ClusterUnavailable(f"{what}: PostgreSQL did not answer within {limit} s") from exc
        except UNAVAILABLE as exc:
            _discard(conn)
            raise ClusterUnavailable(f"{what}: {_describe(exc)}") from exc
        finally:
            if conn is not None:
                try:
                    await pool.release(conn, timeout=RELEASE_TIMEOUT)
                except (TimeoutError, *UNAVAILABLE):
                    _discard(conn)

    # -- schema and leases ------------------------------------------------------------------

    async def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date (safe with several boxes at once)."""
        async with self._conn("migrate", MIGRATE_TIMEOUT) as conn:
            try:
                before, after = await migrate(conn, MIGRATE_TIMEOUT)
            except SchemaTooNew as exc:
                raise ClusterError(str(exc)) from exc
            except asyncpg.exceptions.LockNotAvailableError as exc:
                # An addition waited too long for its table's lock: tried again with the floor.
                raise ClusterUnavailable(f"migrate: {exc}") from exc
        if before != after:
            LOGGER.info("cluster schema migrated from version %d to %d", before, after)
        return before, after

    async def schema_version(self) -> int:
        """The database's schema version (0: no box has set it up yet); changes nothing."""
        async with self._conn("schema version") as conn:
            return await current_version(conn)

    async def heartbeat(self) -> float:
        """Renew this box's lease (registering the box on first call); returns the seconds
        the lease now runs, by the database's clock."""
        started = "now()" if not self._registered else "boxes.started"
        async with self._conn("heartbeat") as conn:
            left = await conn.fetchval(
                "INSERT INTO boxes (name, lease_until, version)"
                " VALUES ($1, now() + make_interval(secs => $2), $3)"
                " ON CONFLICT (name) DO UPDATE SET lease_until = excluded.lease_until,"
                f" version = excluded.version, started = {started}"
                " RETURNING extract(epoch FROM lease_until - now())::float8",
                self.box,
                self.lease,
                self.version,
            )
        self._registered = True
        return float(left)

    async def leave(self) -> None:
        """End this box's lease now (clean shutdown): its numbers leave the counts at once."""
        async with self._conn("leave") as conn:
            await conn.execute("UPDATE boxes SET lease_until = now() WHERE name = $1", self.box)

    # -- numbers ----------------------------------------------------------------------------

    async def publish_numbers(self, entries: Iterable[NumberEntry]) -> int:
        """Replace this box's numbers with ``entries`` in one transaction; returns how many."""
        rows: dict[str, NumberEntry] = {}
        for e in entries:
            rows.setdefault(e.number, e)
        values = list(rows.values())
        async with self._conn("publish numbers") as conn, conn.transaction():
            await conn.execute(queries.PUBLISH_BOX, self.box, self.version)
            await conn.execute(queries.PUBLISH_DROP, self.box, [e.number for e in values])
            await conn.execute(
                queries.PUBLISH_UPSERT,
                self.box,
                [e.number for e in values],
                [e.port for e in values],
                [e.iccid for e in values],
                [e.country.strip().lower() for e in values],
                [e.country_id for e in values],
                [e.operator.strip().lower() for e in values],
                [e.sellable for e in values],
                [e.operator_code for e in values],
                [e.date_start for e in values],
            )
            await conn.execute(queries.PUBLISH_BUSY, self.box)
        return len(values)

    async def fleet_listed(self, fresh: float) -> frozenset[str] | None:
        """The numbers this box stored that are on the last list Onlinesim accepted from the
        publishing box; None when that record was not renewed within ``fresh`` s (the publisher
        is gone, or is an older muxd that records nothing), is dated ahead of the database's
        clock, or there is none."""
        async with self._conn("fleet listed") as conn:
            row = await conn.fetchrow(queries.FLEET_LISTED, self.box, float(fresh))
        if row is None or not row["fresh"]:
            return None
        return frozenset(row["numbers"])

    async def ask_republish(self) -> bool:
        """Ask the box publishing the v2 list to publish it again (it looks every FLEET_POLL);
        False when there is no record yet (nobody published one)."""
        async with self._conn("ask for a new list") as conn:
            done = await conn.execute("UPDATE fleet_published SET republish = true WHERE id = 1")
        return done != "UPDATE 0"

    async def live_numbers(self) -> list[LiveNumber]:
        """Sellable numbers of boxes whose lease is valid now (one entry per number)."""
        async with self._conn("live numbers") as conn:
            rows = await conn.fetch(queries.LIVE)
        return [
            LiveNumber(r["number"], r["box"], r["port"], r["country"], r["operator"]) for r in rows
        ]

    async def service_counts(
        self, services: Sequence[str], *, rent: bool = False
    ) -> dict[str, dict[str, dict[str, int]]]:
        """GET_SERVICES across the fleet: country -> operator -> service -> numbers free for
        it (live, in no open operation, not sold for that service; ``rent`` adds a "rent"
        count of numbers in no open operation). Operators whose numbers are all busy are
        listed with zeros; the caller adds "any"."""
        keys = [*services, *([RENT] if rent else [])]
        async with self._conn("service counts") as conn:
            rows = await conn.fetch(queries.COUNTS, keys)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in rows:
            out.setdefault(r["country"], {}).setdefault(r["operator"], {})[r["service"]] = int(
                r["free"]
            )
        return out

    # -- v1 operations ----------------------------------------------------------------------

    async def reserve(
        self,
        *,
        country: str,
        operator: str,
        service: str,
        masks: Sequence[str] = (),
        rent: bool = False,
        sum: float | None = None,
        hold: float = RESERVATION,
        request: uuid.UUID | None = None,
    ) -> Operation | None:
        """GET_NUMBER: atomically open an operation on a live number that fits, or None.

        Never the same number twice (open operations are unique per number), never one
        matching an exception mask, never one sold for ``service`` (unless rent). ``request``
        identifies this GET_NUMBER for :meth:`abandon` when its answer never left the box.
        """
        criteria = Criteria.of(country, operator, service, masks, rent)
        token = uuid.uuid4() if request is None else request
        (found,) = await self.reserve_group(criteria, [(token, sum)], hold=hold)
        return found

    async def reserve_group(
        self,
        criteria: Criteria,
        requests: Sequence[tuple[uuid.UUID, float | None]],
        *,
        hold: float = RESERVATION,
    ) -> list[Operation | None]:
        """:meth:`reserve` for several GET_NUMBERs of the same ``criteria`` at once, in one
        statement (all or nothing): ``requests`` are (request token, sum) pairs; the answer
        holds each one's operation, or None, in their order. When fewer numbers fit than there
        are requests, the first requests get them."""
        patterns = mask_patterns(criteria.masks)
        found: dict[uuid.UUID, Operation] = {}
        left = list(requests)
        async with self._conn("reserve") as conn:
            for _ in range(RESERVE_ATTEMPTS):
                try:
                    rows = await conn.fetch(
                        queries.RESERVE_ONE if len(left) == 1 else queries.RESERVE,
                        criteria.country,
                        criteria.operator,
                        patterns,
                        criteria.rent,
                        criteria.service,
                        [amount for _, amount in left],
                        hold,
                        self.box,
                        [token for token, _ in left],
                    )
                except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as exc:
                    if getattr(exc, "constraint_name", None) == "operations_request_key":
                        raise ValueError("a request token was used before") from exc
                    continue  # another box took one of those numbers a moment before us
                for row in rows:
                    found[row["request"]] = operation_from_row(row)
                if not rows or len(rows) == len(left) or rows[0]["candidates"] == len(rows):
                    break  # all served, or no more numbers fit (or all others are held)
                # A number listed by two boxes took two of the rows: the rest try again.
                left = [(token, amount) for token, amount in left if token not in found]
        return [found.get(token) for token, _ in requests]

    async def abandon(self, request: uuid.UUID) -> int | None:
        """Release the operation a GET_NUMBER opened when its answer never reached Onlinesim
        (it will never be finished); returns its id, or None when there was none."""
        async with self._conn("abandon") as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE operations SET state = 'expired', finished = now()"
                " WHERE request = $1 AND state = 'open' RETURNING activation_id, number",
                request,
            )
            if row is None:
                return None
            await conn.execute(queries.RELEASE, [row["number"]])
            await conn.execute(queries.ANNOUNCE, [row["activation_id"]])
        return int(row["activation_id"])

    async def finish(
        self, activation_id: int, status: int, amount: float | None = None, *, sells: bool
    ) -> tuple[FinishOutcome, Operation | None]:
        """FINISH_ACTIVATION from any box, idempotent. ``sells``: this status marks (number,
        service) sold. ``finished``: it was open and is now closed; ``late``: it had expired
        and this is its first FINISH (status and sale recorded); ``repeat``: closed already,
        nothing changes; ``unknown``: no such id."""
        async with self._conn("finish") as conn:
            row = await conn.fetchrow(queries.FINISH, activation_id, status, amount, sells)
        if row is None:
            return "unknown", None
        found = operation_from_row(row)
        if not row["changed"]:
            return "repeat", found
        return ("finished" if found.state == "open" else "late"), found

    async def expire_due(self) -> list[int]:
        """Close reservations past their end that nobody finished (any box may run this)."""
        async with self._conn("expire") as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE operations SET state = 'expired', finished = now()"
                " WHERE state = 'open' AND expires <= now() RETURNING activation_id, number"
            )
            if rows:
                await conn.execute(queries.RELEASE, [r["number"] for r in rows])
                await conn.execute(queries.ANNOUNCE, [r["activation_id"] for r in rows])
        return sorted(int(r["activation_id"]) for r in rows)

    async def open_operations(self, box: str | None = None) -> list[Operation]:
        """Open operations whose SMS ``box`` pushes (every box's when None), oldest first."""
        async with self._conn("open operations") as conn:
            rows = await conn.fetch(
                f"SELECT {', '.join('o.' + c.strip() for c in queries.OP_COLUMNS.split(','))}"
                " FROM operations o JOIN pushes p USING (activation_id)"
                " WHERE o.state = 'open' AND ($1::text IS NULL OR p.box = $1)"
                " ORDER BY o.activation_id",
                box,
            )
        return [operation_from_row(r) for r in rows]

    async def operations(self, activation_ids: Sequence[int]) -> list[Operation]:
        """The operations with these ids, whatever their state (unknown ids are left out)."""
        async with self._conn("operations") as conn:
            rows = await conn.fetch(
                f"SELECT {queries.OP_COLUMNS} FROM operations"
                " WHERE activation_id = ANY($1::bigint[]) ORDER BY activation_id",
                list(activation_ids),
            )
        return [operation_from_row(r) for r in rows]

    async def boxes(self) -> list[BoxState]:
        """Every box known, with its lease (by the database's clock) and counts."""
        async with self._conn("boxes") as conn:
            rows = await conn.fetch(
                "SELECT b.name, b.version, b.started, b.lease_until,"
                " extract(epoch FROM b.lease_until - now())::float8 AS lease_left,"
                " (SELECT count(*) FROM numbers n WHERE n.box = b.name) AS numbers,"
                " (SELECT count(*) FROM numbers n WHERE n.box = b.name AND n.sellable) AS sellable,"
                " (SELECT count(*) FROM pushes p JOIN operations o USING (activation_id)"
                "  WHERE p.box = b.name AND o.state = 'open') AS open"
                " FROM boxes b ORDER BY b.name"
            )
        return [
            BoxState(
                name=r["name"],
                version=r["version"],
                started=r["started"],
                lease_until=r["lease_until"],
                lease_left=float(r["lease_left"]),
                numbers=int(r["numbers"]),
                sellable=int(r["sellable"]),
                open_operations=int(r["open"]),
            )
            for r in rows
        ]


def _discard(conn: Conn | None) -> None:
    """Close a connection at once, without a word to the server (which may not answer)."""
    if conn is None:
        return
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass  # the pool took it back already (its connection was lost)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
