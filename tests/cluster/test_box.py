"""A box's cluster side in-process, on a real journal and a throwaway PostgreSQL: a GET_NUMBER
whose answer cannot reach Onlinesim (late, or the request cancelled) does not hold its number."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from muxd.cluster.box import ClusterBox
from muxd.cluster.store import ClusterStore
from muxd.config import ClusterConfig, V1Config
from muxd.store import Journal
from muxd.upstream.v1.backend import NumberRequest
from muxd.upstream.v1.names import Names

from ..v1.conftest import ports_for
from .helpers import wait_until

NUMBERS = ["+79001110001", "+79001110002"]
REQUEST = NumberRequest("russia", "any", "vk", 10.0, (), False)


@contextlib.asynccontextmanager
async def running_box(
    tmp_path: Path, dsn: str
) -> AsyncIterator[tuple[ClusterBox, CollectorRegistry, ClusterStore]]:
    journal = await Journal.open(tmp_path)
    registry = CollectorRegistry()
    box = ClusterBox(
        ClusterConfig(database=dsn, box="b", lease=3.0),
        V1Config(services=["vk"]),
        journal,
        lambda: ports_for(NUMBERS),
        asyncio.Event(),
        Names(),
        registry,
    )
    task = asyncio.create_task(box.run())
    try:
        async with ClusterStore(dsn, "observer") as observer:

            async def published() -> bool:
                return box.published == len(NUMBERS) and box.lease.live is True

            await wait_until(published)
            yield box, registry, observer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.close()


def abandoned(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("muxd_cluster_reservations_total", {"result": "abandoned"})
    return value or 0.0


async def test_a_late_reservation_is_released(tmp_path: Path, dsn: str) -> None:
    async with running_box(tmp_path, dsn) as (box, registry, observer):
        box.backend.deadline = 0.0  # PostgreSQL always answers after this
        assert await box.backend.reserve(REQUEST) is None

        async def released() -> bool:
            return abandoned(registry) == 1 and await observer.open_operations(None) == []

        await wait_until(released)
        (op,) = await observer.operations([1])
        assert op.state == "expired"
        # Its number is for sale again: both numbers count.
        counts = await observer.service_counts(["vk"])
        assert counts["russia"]["mts"]["vk"] == len(NUMBERS)


async def test_a_cancelled_request_releases_its_reservation(tmp_path: Path, dsn: str) -> None:
    async with running_box(tmp_path, dsn) as (box, registry, observer):
        request = asyncio.create_task(box.backend.reserve(REQUEST))
        await asyncio.sleep(0)  # the reservation is on its way
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request

        async def released() -> bool:
            return abandoned(registry) == 1 and await observer.open_operations(None) == []

        await wait_until(released)
        # An answered GET_NUMBER keeps its number.
        op = await box.backend.reserve(REQUEST)
        assert op is not None
        assert [o.activation_id for o in await observer.open_operations(None)] == [op.activation_id]


async def test_a_request_with_no_time_left_reserves_nothing(tmp_path: Path, dsn: str) -> None:
    # Its body took the whole GET_NUMBER budget: an answer would come after Onlinesim gave up.
    async with running_box(tmp_path, dsn) as (box, _registry, observer):
        late = NumberRequest("russia", "any", "vk", 10.0, (), False, within=-0.5)
        assert await box.backend.reserve(late) is None
        assert await observer.open_operations(None) == []
        counts = await observer.service_counts(["vk"])
        assert counts["russia"]["mts"]["vk"] == len(NUMBERS)


async def test_a_box_opens_connections_ahead_once_in_the_cluster(tmp_path: Path, dsn: str) -> None:
    async with running_box(tmp_path, dsn) as (_box, registry, _observer):

        async def warmed() -> bool:
            ok = registry.get_sample_value(
                "muxd_cluster_calls_total", {"call": "warm", "result": "ok"}
            )
            return ok == 1

        await wait_until(warmed)
