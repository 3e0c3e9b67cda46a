"""PostgreSQL stopped or frozen: every call fails fast with ClusterUnavailable, never hangs,
and the store works again once the server is back."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from muxd.cluster.notify import PublisherLock, listen
from muxd.cluster.records import ClusterUnavailable
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres
from tests.cluster.conftest import fresh_database
from tests.cluster.helpers import entry

# The store's deadlines in this test (the defaults are 3 s and 2 s).
CALL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 0.5
# Slack for scheduling on a loaded machine.
SLACK = 0.5


def _calls(store: ClusterStore) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "heartbeat": store.heartbeat,
        "publish": lambda: store.publish_numbers([entry("+4915100000001")]),
        "live": store.live_numbers,
        "counts": lambda: store.service_counts(["vk"]),
        "reserve": lambda: store.reserve(country="germany", operator="any", service="vk"),
        "finish": lambda: store.finish(1, 4, sells=False),
        "expire": store.expire_due,
        "open": lambda: store.open_operations("a"),
        "boxes": store.boxes,
        "listen": lambda: listen(store, "a", lambda aid: None),
        "lock": PublisherLock(store).try_acquire,
        "warm": store.warm,
    }


async def _all_unavailable(store: ClusterStore) -> None:
    for name, call in _calls(store).items():
        start = time.monotonic()
        with pytest.raises(ClusterUnavailable):
            await call()
        took = time.monotonic() - start
        assert took < CALL_TIMEOUT + SLACK, f"{name} took {took:.2f} s"


async def _all_work(store: ClusterStore) -> None:
    await store.heartbeat()
    await store.publish_numbers([entry("+4915100000001")])
    assert [n.number for n in await store.live_numbers()] == ["+4915100000001"]


async def test_stopped_server_fails_fast_then_recovers(private_postgres: ThrowawayPostgres) -> None:
    dsn = await fresh_database(private_postgres)
    async with ClusterStore(
        dsn, "a", call_timeout=CALL_TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    ) as store:
        await store.migrate()
        await _all_work(store)  # the pool now holds a connection the stop will cut
        private_postgres.stop("immediate")
        await _all_unavailable(store)
        private_postgres.start()
        await _all_work(store)


async def test_frozen_server_fails_within_the_call_timeout(
    private_postgres: ThrowawayPostgres,
) -> None:
    dsn = await fresh_database(private_postgres)
    async with ClusterStore(
        dsn, "a", call_timeout=CALL_TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    ) as store:
        await store.migrate()
        await _all_work(store)
        private_postgres.pause()
        try:
            await _all_unavailable(store)
        finally:
            private_postgres.resume()
        await _all_work(store)


async def test_a_box_can_start_while_the_server_is_down(
    private_postgres: ThrowawayPostgres,
) -> None:
    dsn = await fresh_database(private_postgres)
    private_postgres.stop()
    async with ClusterStore(
        dsn, "a", call_timeout=CALL_TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    ) as store:
        with pytest.raises(ClusterUnavailable):
            await store.migrate()
        private_postgres.start()
        await store.migrate()
        await _all_work(store)


async def test_a_read_only_server_is_unavailable_not_fatal(postgres: ThrowawayPostgres) -> None:
    """After a failover to a standby (or a server set read-only), every write fails with a
    PostgreSQL error of its own: the box treats it as PostgreSQL unavailable (and retries with
    its floors) instead of letting it end the cluster's tasks, and the daemon with them."""
    dsn = await fresh_database(postgres)
    name = dsn.rsplit("/", 1)[1]
    async with ClusterStore(dsn, "a", call_timeout=CALL_TIMEOUT) as store:
        await store.migrate()
        await _all_work(store)
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        async with ClusterStore(dsn, "a", call_timeout=CALL_TIMEOUT) as store:
            with pytest.raises(ClusterUnavailable, match="read-only"):
                await store.heartbeat()
            with pytest.raises(ClusterUnavailable):
                await store.publish_numbers([entry("+4915100000001")])
        await admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = off")
        async with ClusterStore(dsn, "a", call_timeout=CALL_TIMEOUT) as store:
            await _all_work(store)
    finally:
        await admin.close()
