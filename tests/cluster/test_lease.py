"""The lease keeper through a PostgreSQL outage: keeps its pace, logs changes only."""

from __future__ import annotations

import asyncio
import logging

import pytest

from muxd.cluster.lease import RETRY_FLOOR, LeaseKeeper
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres
from tests.cluster.conftest import fresh_database


class StepSleep:
    """An injected sleep: records each delay and returns when the test allows one step."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._steps: asyncio.Queue[None] = asyncio.Queue()
        self.waiting = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting.set()
        await self._steps.get()
        self.waiting.clear()

    async def step(self) -> None:
        """Let the loop run one more renewal and wait until it sleeps again."""
        self.waiting.clear()
        self._steps.put_nowait(None)
        await asyncio.wait_for(self.waiting.wait(), 10.0)


async def test_lease_keeper_rides_out_an_outage(
    private_postgres: ThrowawayPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd.cluster.lease")
    dsn = await fresh_database(private_postgres)
    async with ClusterStore(dsn, "a", lease=15.0, call_timeout=1.0, connect_timeout=0.5) as store:
        await store.migrate()
        sleep = StepSleep()
        keeper = LeaseKeeper(store, sleep=sleep)
        task = asyncio.create_task(keeper.run())
        try:
            await asyncio.wait_for(sleep.waiting.wait(), 10.0)
            assert keeper.live is True
            assert (await store.boxes())[0].live
            private_postgres.stop("immediate")
            for _ in range(5):
                await sleep.step()
            assert keeper.live is False
            assert keeper.failures == 5
            private_postgres.start()
            await sleep.step()
            assert keeper.live is True
            assert keeper.failures == 0
            assert (await store.boxes())[0].live
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert sleep.delays == [5.0] * 7
    assert all(d >= RETRY_FLOOR for d in sleep.delays)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # joined, lost (once for five failures), renewed
    assert messages[0].startswith("cluster: box a joined")
    assert messages[1].startswith("cluster: cannot renew the lease of box a")
    assert messages[2] == "cluster: lease of box a renewed again after 5 failed attempts"


def test_interval_has_a_floor() -> None:
    store = ClusterStore("postgresql://u@127.0.0.1/x", "a", lease=1.5)
    assert LeaseKeeper(store).interval == RETRY_FLOOR
