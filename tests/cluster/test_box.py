"""A box's cluster side in-process, on a real journal and a throwaway PostgreSQL: a GET_NUMBER
whose answer cannot reach Onlinesim (late, or the request cancelled) does not hold its number;
a FINISH answered by another box is credited here, on the box holding the SIM, once; an
operation announced again while it is being read is read again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

from muxd.cluster.box import ClusterBox
from muxd.cluster.records import Operation as ClusterOperation
from muxd.cluster.store import ClusterStore
from muxd.config import ClusterConfig, V1Config
from muxd.store import Journal
from muxd.upstream.v1.backend import NumberRequest
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.operations import Operation

from ..v1.conftest import ports_for
from .helpers import wait_until

NUMBERS = ["+79001110001", "+79001110002"]
# Well inside the reconcile's period (RECONCILE_INTERVAL): what a notification brings.
NOTIFIED_WITHIN = 5.0
REQUEST = NumberRequest("russia", "any", "vk", 10.0, (), False)


@contextlib.asynccontextmanager
async def running_box(
    tmp_path: Path,
    dsn: str,
    on_finished: Callable[[Operation, int, float | None], None] = lambda _o, _s, _f: None,
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
        on_finished=on_finished,
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


def recorder(
    credits: list[tuple[int, int, float | None]],
) -> Callable[[Operation, int, float | None], None]:
    """An ``on_finished`` that records (activation id, status, sum) of each credit."""

    def credit(op: Operation, status: int, finish_sum: float | None) -> None:
        credits.append((op.activation_id, status, finish_sum))

    return credit


async def test_a_finish_answered_elsewhere_is_credited_by_the_holder_once(
    tmp_path: Path, dsn: str
) -> None:
    credits: list[tuple[int, int, float | None]] = []
    credit = recorder(credits)

    async with running_box(tmp_path, dsn, credit) as (box, _registry, observer):
        op = await box.backend.reserve(REQUEST)
        assert op is not None
        aid = op.activation_id
        # Another box answers the FINISH: this one hears of it and credits it.
        assert (await observer.finish(aid, 3, 20.0, sells=True))[0] == "finished"

        async def credited() -> bool:
            return credits != []

        await wait_until(credited)
        assert credits == [(aid, 3, 20.0)]
        # A repeated FINISH and the reconcile credit nothing more.
        assert (await observer.finish(aid, 3, 20.0, sells=True))[0] == "repeat"
        await box.reconcile()
        assert credits == [(aid, 3, 20.0)]
        # Its own FINISH too: credited as the box learns of it, not as it answers.
        second = await box.backend.reserve(REQUEST)
        assert second is not None
        outcome, _op = await box.backend.finish(second.activation_id, 3, None, sells=True)
        assert outcome == "finished"

        async def both() -> bool:
            return len(credits) == 2

        await wait_until(both)
        assert credits[1] == (second.activation_id, 3, None)
        await box.reconcile()
        assert len(credits) == 2


async def test_an_operation_announced_again_while_it_is_read_is_read_again(
    tmp_path: Path, dsn: str
) -> None:
    credits: list[int] = []
    async with running_box(tmp_path, dsn, lambda op, _s, _f: credits.append(op.activation_id)) as (
        box,
        _registry,
        observer,
    ):
        read = box.store.operations
        finished: list[int] = []

        async def read_then_finish(ids: Sequence[int]) -> list[ClusterOperation]:
            """Read the operations; meanwhile another box finishes the first, and its
            notification arrives before this read's result is taken in."""
            ops = await read(ids)
            if not finished:
                finished.append(ids[0])
                await observer.finish(ids[0], 3, None, sells=True)
                await wait_until(_is_set(box))
            return ops

        box.store.operations = read_then_finish  # type: ignore[method-assign]
        op = await box.backend.reserve(REQUEST)
        assert op is not None

        async def credited() -> bool:
            return credits == [op.activation_id]

        await wait_until(credited, NOTIFIED_WITHIN)
        assert finished == [op.activation_id]


def _is_set(box: ClusterBox) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return box._notify_wake.is_set()

    return check


async def test_a_box_opens_connections_ahead_once_in_the_cluster(tmp_path: Path, dsn: str) -> None:
    async with running_box(tmp_path, dsn) as (_box, registry, _observer):

        async def warmed() -> bool:
            ok = registry.get_sample_value(
                "muxd_cluster_calls_total", {"call": "warm", "result": "ok"}
            )
            return ok == 1

        await wait_until(warmed)


async def test_a_late_finish_whose_notification_was_missed_is_credited_by_the_reconcile(
    tmp_path: Path, dsn: str
) -> None:
    credits: list[tuple[int, int, float | None]] = []
    credit = recorder(credits)

    async with running_box(tmp_path, dsn, credit) as (box, _registry, observer):
        op = await box.backend.reserve(REQUEST)
        assert op is not None
        aid = op.activation_id
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "UPDATE operations SET expires = now() WHERE activation_id = $1", aid
            )
            assert aid in await observer.expire_due()

            async def expired_here() -> bool:
                row = await box._journal.execute(
                    lambda c: c.execute(
                        "SELECT state FROM operations WHERE activation_id = ?", (aid,)
                    ).fetchone()
                )
                return row is not None and row[0] == "expired"

            await wait_until(expired_here)
            # The late FINISH's one notification never reaches this box: it is sent on a
            # channel nobody listens to (as while the box's listener reconnects).
            await conn.execute(
                "UPDATE operations SET box = 'elsewhere' WHERE activation_id = $1", aid
            )
            assert (await observer.finish(aid, 3, 20.0, sells=True))[0] == "late"
            await conn.execute(
                "UPDATE operations SET box = $2 WHERE activation_id = $1", aid, box.name
            )
        finally:
            await conn.close()
        await box.reconcile()
        assert credits == [(aid, 3, 20.0)]
        await box.reconcile()  # once
        assert credits == [(aid, 3, 20.0)]


async def test_a_credit_callback_that_raises_loses_no_other_credit(
    tmp_path: Path, dsn: str
) -> None:
    credits: list[int] = []
    first: list[int] = []

    def credit(op: Operation, _status: int, _sum: float | None) -> None:
        if op.activation_id in first:
            raise RuntimeError("a bug in the earnings metrics")
        credits.append(op.activation_id)

    async with running_box(tmp_path, dsn, credit) as (box, _registry, observer):
        ops = [await box.backend.reserve(REQUEST) for _ in NUMBERS]
        ids = [op.activation_id for op in ops if op is not None]
        assert len(ids) == len(NUMBERS)
        first.append(ids[0])
        for aid in ids:  # finished elsewhere, taken in here together or one by one
            assert (await observer.finish(aid, 3, 20.0, sells=True))[0] == "finished"
        await box.reconcile()

        async def second_credited() -> bool:
            return credits == ids[1:]

        await wait_until(second_credited)
