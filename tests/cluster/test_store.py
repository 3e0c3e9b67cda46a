"""ClusterStore against a real PostgreSQL: numbers, reservations, sales, finish, expiry."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from muxd.cluster.store import POOL_WARM, ClusterStore
from tests.cluster.helpers import entry, wait_until


async def test_reserve_takes_each_number_once_then_answers_none(store: ClusterStore) -> None:
    await store.publish_numbers([entry("+4915100000001"), entry("+4915100000002")])
    first = await store.reserve(country="Germany", operator="any", service="vk")
    second = await store.reserve(country="germany", operator="any", service="vk")
    third = await store.reserve(country="germany", operator="any", service="vk")
    assert first is not None
    assert second is not None
    assert {first.number, second.number} == {"+4915100000001", "+4915100000002"}
    assert third is None
    assert second.activation_id > first.activation_id >= 1
    assert first.box == "a"
    assert first.state == "open"
    assert first.expires is not None


async def test_reserve_honours_masks_operator_and_country(store: ClusterStore) -> None:
    await store.publish_numbers(
        [
            entry("+4915100000001", operator="vodafone"),
            entry("+4917600000002", operator="o2"),
            entry("+79281234567", country="russia", operator="beeline"),
        ]
    )
    assert await store.reserve(country="germany", operator="any", service="vk",
                               masks=["4915", "4917"]) is None  # fmt: skip
    op = await store.reserve(country="germany", operator="O2", service="vk", masks=["4915"])
    assert op is not None
    assert op.number == "+4917600000002"
    assert op.operator == "o2"
    assert await store.reserve(country="germany", operator="o2", service="vk") is None
    assert await store.reserve(country="france", operator="any", service="vk") is None
    with pytest.raises(ValueError, match="digits"):
        await store.reserve(country="germany", operator="any", service="vk", masks=["49%"])


async def test_sale_blocks_the_service_not_the_number(store: ClusterStore) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    op = await store.reserve(country="germany", operator="any", service="vk", sum=12.5)
    assert op is not None
    assert op.sum == 12.5
    assert await store.finish(op.activation_id, 3, 12.5, sells=True) == (
        "finished", op,
    )  # fmt: skip
    assert await store.reserve(country="germany", operator="any", service="vk") is None
    other = await store.reserve(country="germany", operator="any", service="wa")
    assert other is not None
    assert other.number == op.number
    await store.finish(other.activation_id, 4, sells=False)
    rent = await store.reserve(country="germany", operator="any", service="vk", rent=True)
    assert rent is not None
    assert rent.service == "rent"
    assert rent.rent
    assert rent.expires is None


async def test_finish_is_idempotent_from_every_box(dsn: str, store: ClusterStore) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    op = await store.reserve(country="germany", operator="any", service="vk")
    assert op is not None
    boxes = [ClusterStore(dsn, name) for name in ("b", "c")]
    for b in boxes:
        await b.open()
    try:
        outcomes = await asyncio.gather(
            *(s.finish(op.activation_id, 3, 4.5, sells=True) for s in [store, *boxes] * 4)
        )
    finally:
        for b in boxes:
            await b.close()
    kinds = sorted(o for o, _ in outcomes)
    assert kinds == ["finished"] + ["repeat"] * 11
    assert (await store.finish(op.activation_id, 4, sells=False))[0] == "repeat"
    assert (await store.finish(999_999, 3, sells=True)) == ("unknown", None)
    async with store._conn("test") as conn:
        assert await conn.fetchval("SELECT count(*) FROM sales") == 1
        row = await conn.fetchrow("SELECT state, status, finish_sum FROM operations")
    assert tuple(row) == ("finished", 3, 4.5)


async def test_expired_reservation_frees_the_number_and_takes_a_late_finish(
    store: ClusterStore,
) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    op = await store.reserve(country="germany", operator="any", service="vk", hold=0.2)
    assert op is not None
    assert await store.expire_due() in ([], [op.activation_id])

    async def expired() -> bool:
        await store.expire_due()
        return not await store.open_operations("a")

    await wait_until(expired)
    again = await store.reserve(country="germany", operator="any", service="wa")
    assert again is not None
    assert again.number == op.number
    assert (await store.finish(op.activation_id, 3, sells=True))[0] == "late"
    assert (await store.finish(op.activation_id, 3, sells=True))[0] == "repeat"
    assert await store.reserve(country="germany", operator="any", service="vk") is None


async def test_abandon_releases_an_unanswered_reservation(store: ClusterStore) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    token = uuid.uuid4()
    op = await store.reserve(country="germany", operator="any", service="vk", request=token)
    assert op is not None
    assert await store.abandon(token) == op.activation_id
    assert await store.abandon(token) is None
    assert await store.reserve(country="germany", operator="any", service="vk") is not None


async def test_publish_replaces_this_box_only_and_keeps_use_order(
    dsn: str, store: ClusterStore
) -> None:
    await store.publish_numbers([entry("+4915100000001"), entry("+4915100000002")])
    async with ClusterStore(dsn, "b") as b:
        await b.heartbeat()
        await b.publish_numbers([entry("+4915100000009")])
        await store.publish_numbers([entry("+4915100000002"), entry("+4915100000003")])
        live = {n.number: n.box for n in await store.live_numbers()}
        assert live == {"+4915100000002": "a", "+4915100000003": "a", "+4915100000009": "b"}
        await store.publish_numbers([])
        assert [n.number for n in await b.live_numbers()] == ["+4915100000009"]


async def test_service_counts_sum_live_boxes(dsn: str, store: ClusterStore) -> None:
    await store.publish_numbers(
        [entry("+4915100000001"), entry("+4915100000002"), entry("+4917600000003", operator="o2")]
    )
    async with ClusterStore(dsn, "b") as b:
        await b.heartbeat()
        await b.publish_numbers([entry("+4915100000004"), entry("+79281234567", "russia", "mts")])
        op = await b.reserve(country="russia", operator="any", service="vk")
        assert op is not None
        sold = await store.reserve(country="germany", operator="o2", service="vk")
        assert sold is not None
        await store.finish(sold.activation_id, 3, sells=True)
        counts = await store.service_counts(["vk", "wa"], rent=True)
    assert counts == {
        "germany": {
            "vodafone": {"vk": 3, "wa": 3, "rent": 3},
            "o2": {"vk": 0, "wa": 1, "rent": 1},
        },
        "russia": {"mts": {"vk": 0, "wa": 0, "rent": 0}},
    }


async def test_identity_ids_are_never_reused_after_a_rollback(store: ClusterStore) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    async with store._conn("test") as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO operations (number, box, service, country, operator, rent, state,"
                " answered_by) VALUES ('+1', 'a', 'vk', 'x', 'y', false, 'bogus', 'a')"
            )
    op = await store.reserve(country="germany", operator="any", service="vk")
    assert op is not None
    assert op.activation_id == 2


async def test_a_sim_moved_to_another_box_keeps_its_open_operation(
    dsn: str, store: ClusterStore
) -> None:
    await store.publish_numbers([entry("+4915100000001")])
    op = await store.reserve(country="germany", operator="any", service="vk")
    assert op is not None
    async with ClusterStore(dsn, "b") as b:
        await b.heartbeat()
        await store.publish_numbers([])  # the SIM left box a ...
        await b.publish_numbers([entry("+4915100000001")])  # ... and came up in box b
        assert await b.reserve(country="germany", operator="any", service="wa") is None
        assert (await b.finish(op.activation_id, 4, sells=False))[0] == "finished"
        again = await b.reserve(country="germany", operator="any", service="wa")
    assert again is not None
    assert again.box == "b"


async def test_warm_opens_connections_ahead(dsn: str, store: ClusterStore) -> None:
    async def muxd_backends() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'muxd'"
                " AND datname = current_database()"
            )
        finally:
            await conn.close()
        return int(count)

    assert await muxd_backends() == 1  # the one the fixture's calls used
    await store.warm()
    assert await muxd_backends() == POOL_WARM  # open, idle in the pool, ready for a burst
    await store.warm()
    assert await muxd_backends() == POOL_WARM  # the same ones, not more
