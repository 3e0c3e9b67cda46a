"""GET_NUMBERs arriving while a reservation is in flight go together when it returns: one
statement per group of equal criteria, numbers paired with the requests in their order, and a
request that gives up while it waits is never reserved. The first flight is held in PostgreSQL
by a table lock, so what arrives meanwhile surely waits."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
from prometheus_client import CollectorRegistry

from muxd.cluster.gate import Gate
from muxd.cluster.groups import ReserveGroups
from muxd.cluster.metrics import ClusterMetrics
from muxd.cluster.records import Criteria
from muxd.cluster.records import Operation as SharedOperation
from muxd.cluster.store import ClusterStore
from muxd.cluster.v1 import ClusterBackend
from muxd.config import V1Config
from muxd.upstream.v1.backend import NumberRequest
from muxd.upstream.v1.operations import Operation

from .helpers import entry, wait_until

# An answer that waits for no statement comes well within this.
AT_ONCE = 1.0

VK = NumberRequest("germany", "any", "vk", 10.0, (), False)


class Fixture:
    def __init__(self, store: ClusterStore, dsn: str) -> None:
        self.store = store
        self.dsn = dsn
        self.registry = CollectorRegistry()
        metrics = ClusterMetrics(self.registry)
        self.abandoned: list[uuid.UUID] = []
        self.backend = ClusterBackend(
            store, V1Config(services=["vk"]), Gate(metrics), metrics, abandon=self.abandoned.append
        )
        self.backend.enabled = True

    def statements(self) -> float:
        value = self.registry.get_sample_value(
            "muxd_cluster_calls_total", {"call": "reserve", "result": "ok"}
        )
        return value or 0.0

    def start(self, request: NumberRequest = VK) -> asyncio.Task[Operation | None]:
        return asyncio.create_task(self.backend.reserve(request))

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Reservations wait in PostgreSQL (the operations table locked) until the block ends."""
        conn = await asyncpg.connect(self.dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                await tx.rollback()
        finally:
            await conn.close()

    async def blocked(self) -> None:
        """Wait until a reservation statement waits for the lock."""

        async def waiting() -> bool:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'muxd'"
            )
            return bool(count)

        conn = await asyncpg.connect(self.dsn)
        try:
            await wait_until(waiting)
        finally:
            await conn.close()

    async def queued(self, n: int) -> None:
        """Let the requests just started run up to their wait: ``n`` wait for the flight."""
        await asyncio.sleep(0)  # each runs to its first wait in one step of the loop
        assert self.backend.groups.waiting == n

    async def open_count(self) -> int:
        return len(await self.store.open_operations(None))


@contextlib.asynccontextmanager
async def fixture(store: ClusterStore, dsn: str, numbers: int) -> AsyncIterator[Fixture]:
    await store.publish_numbers([entry(f"+491510000{i:03d}") for i in range(numbers)])
    f = Fixture(store, dsn)
    try:
        yield f
    finally:
        await f.backend.close()


async def test_requests_during_a_flight_go_as_one_statement(store: ClusterStore, dsn: str) -> None:
    async with fixture(store, dsn, 6) as f:
        async with f.held():
            first = f.start()
            await f.blocked()
            rest = [f.start() for _ in range(4)]
            await f.queued(4)
        ops = [await first, *await asyncio.gather(*rest)]
        assert all(op is not None for op in ops)
        assert len({op.number for op in ops if op is not None}) == 5
        assert f.statements() == 2  # the first alone, then the four together
        assert await f.open_count() == 5
        assert f.abandoned == []


async def test_fewer_numbers_than_requests_serve_the_first(store: ClusterStore, dsn: str) -> None:
    async with fixture(store, dsn, 3) as f:
        async with f.held():
            first = f.start()
            await f.blocked()
            rest = [f.start() for _ in range(4)]
            await f.queued(4)
        assert await first is not None
        got = await asyncio.gather(*rest)
        assert [op is not None for op in got] == [True, True, False, False]
        assert f.statements() == 2
        assert await f.open_count() == 3


async def test_a_request_cancelled_in_its_group_is_not_reserved(
    store: ClusterStore, dsn: str
) -> None:
    async with fixture(store, dsn, 6) as f:
        async with f.held():
            first = f.start()
            await f.blocked()
            rest = [f.start() for _ in range(3)]
            await f.queued(3)
            rest[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rest[1]
        assert await first is not None
        a, b = await asyncio.gather(rest[0], rest[2])
        assert a is not None
        assert b is not None
        assert await f.open_count() == 3
        assert f.abandoned == []  # nothing to release: it never left the box
        assert f.statements() == 2


async def test_a_request_late_in_its_group_is_not_reserved(store: ClusterStore, dsn: str) -> None:
    async with fixture(store, dsn, 6) as f:
        late = NumberRequest("germany", "any", "vk", 10.0, (), False, within=0.2)
        async with f.held():
            first = f.start()
            await f.blocked()
            waiting = f.start()
            # Answers "no numbers" at its deadline while the first still waits in PostgreSQL.
            assert await f.backend.reserve(late) is None
        assert await first is not None
        assert await waiting is not None
        assert await f.open_count() == 2
        assert f.abandoned == []


async def test_each_criteria_has_its_own_statement(store: ClusterStore, dsn: str) -> None:
    async with fixture(store, dsn, 6) as f:
        masked = NumberRequest("germany", "any", "vk", 10.0, ("491510000",), False)
        async with f.held():
            first = f.start()
            await f.blocked()
            plain = [f.start() for _ in range(2)]
            excluded = [f.start(masked) for _ in range(2)]
            await f.queued(4)
        assert await first is not None
        assert all(op is not None for op in await asyncio.gather(*plain))
        assert await asyncio.gather(*excluded) == [None, None]  # every number is masked
        assert f.statements() == 3  # the first, then one per criteria


async def test_a_number_listed_twice_counts_once(dsn: str, store: ClusterStore) -> None:
    # The same number on two boxes' lists (a SIM moved) is one number: it takes two of the
    # rows a group locks, and the request left over is served within the call, by the next.
    async with ClusterStore(dsn, "b") as b:
        await b.heartbeat()
        await store.publish_numbers([entry("+4915100001"), entry("+4915100002")])
        await b.publish_numbers([entry("+4915100001"), entry("+4915100003")])
        criteria = Criteria.of("germany", "any", "vk", (), False)
        requests = [(uuid.uuid4(), float(i)) for i in range(3)]
        got = await store.reserve_group(criteria, requests)
        assert [op is not None for op in got] == [True, True, True]
        numbers = sorted(op.number for op in got if op is not None)
        assert numbers == ["+4915100001", "+4915100002", "+4915100003"]
        assert [op.sum for op in got if op is not None] == [0.0, 1.0, 2.0]  # each its own sum
        # None left: the next group gets nothing.
        assert await store.reserve_group(criteria, [(uuid.uuid4(), None) for _ in range(2)]) == [
            None,
            None,
        ]


async def test_closing_answers_what_waits_and_lets_the_flight_land() -> None:
    # No database: a stand-in statement that returns when told to.
    sent: list[int] = []
    release = asyncio.Event()

    async def send(
        criteria: Criteria, requests: Sequence[tuple[uuid.UUID, float | None]]
    ) -> list[SharedOperation | None]:
        sent.append(len(requests))
        await release.wait()
        return [None] * len(requests)

    groups = ReserveGroups(send)
    criteria = Criteria.of("germany", "any", "vk", (), False)
    first = groups.submit(criteria, 1.0)
    second = groups.submit(criteria, 2.0)
    assert (first.sent, second.sent) == (True, False)
    closing = asyncio.create_task(groups.close())
    await asyncio.sleep(0)  # close() runs up to its wait for the flight
    assert second.future.result() is None  # answered at once, never sent
    assert not closing.done()  # the flight in progress is waited for
    release.set()
    await closing
    assert await first.future is None
    assert sent == [1]


async def test_postgresql_known_down_a_request_does_not_wait_for_the_probing_flight(
    store: ClusterStore, dsn: str
) -> None:
    async with fixture(store, dsn, 6) as f:
        f.backend._gate.failed("PostgreSQL went away")
        async with f.held():
            probe = f.start()  # finds out whether PostgreSQL is back: it hangs
            await f.blocked()
            second = f.start()
            async with asyncio.timeout(AT_ONCE):
                assert await second is None
            assert f.backend.groups.waiting == 0
        assert await probe is not None  # the lock went: PostgreSQL answered the probe
