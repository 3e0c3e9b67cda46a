"""Property: many concurrent GET_NUMBERs from three boxes (three pools, as three muxd would
have; one statement per request, or grouped by equal criteria as a box sends them under load)
never reserve a number twice, never hand out a number an exception mask, a sale, an operator
filter or a dead box excludes, and answer "none" only when nothing fitting was left."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxd.cluster.records import Criteria, Operation
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres
from tests.cluster.conftest import fresh_database
from tests.cluster.helpers import entry

BOXES = ("a", "b", "c")
OPERATORS = ("vodafone", "o2")
SERVICES = ("vk", "wa")
PREFIXES = ("151", "152", "160", "176")
MASKS = ("49151", "4915", "4916", "49176", "4917600001")


@dataclass(frozen=True)
class Number:
    digits: str
    operator: str
    boxes: frozenset[str]

    @property
    def number(self) -> str:
        return "+" + self.digits


@dataclass(frozen=True)
class Request:
    box: str
    operator: str
    service: str
    masks: tuple[str, ...]


numbers_st = st.lists(
    st.builds(
        Number,
        digits=st.builds(
            lambda p, i: f"49{p}{i:05d}", st.sampled_from(PREFIXES), st.integers(0, 20)
        ),
        operator=st.sampled_from(OPERATORS),
        boxes=st.frozensets(st.sampled_from(BOXES), min_size=1),
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda n: n.digits,
)
requests_st = st.lists(
    st.builds(
        Request,
        box=st.sampled_from(BOXES),
        operator=st.sampled_from(("any", *OPERATORS)),
        service=st.sampled_from(SERVICES),
        masks=st.lists(st.sampled_from(MASKS), max_size=2, unique=True).map(tuple),
    ),
    min_size=1,
    max_size=40,
)


def fits(n: Number, req: Request, *, dead: str | None, sold: set[tuple[str, str]]) -> bool:
    return (
        bool(n.boxes - {dead})
        and (req.operator == "any" or n.operator == req.operator)
        and not any(n.digits.startswith(m) for m in req.masks)
        and (n.number, req.service) not in sold
    )


def _criteria(r: Request) -> Criteria:
    return Criteria.of("germany", r.operator, r.service, r.masks, False)


async def _grouped(
    stores: dict[str, ClusterStore], requests: list[Request]
) -> list[Operation | None]:
    """The requests as a box groups them: one statement per box and criteria, all at once."""
    groups: dict[tuple[str, Criteria], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((r.box, _criteria(r)), []).append(i)
    keys = list(groups)
    answers = await asyncio.gather(
        *(
            stores[box].reserve_group(
                criteria, [(uuid.uuid4(), None) for _ in groups[box, criteria]]
            )
            for box, criteria in keys
        )
    )
    results: list[Operation | None] = [None] * len(requests)
    for key, found in zip(keys, answers, strict=True):
        for i, op in zip(groups[key], found, strict=True):
            results[i] = op
    return results


async def _round(
    dsn: str,
    numbers: list[Number],
    requests: list[Request],
    dead: str | None,
    sold_idx: list[int],
    grouped: bool,
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE boxes, numbers, operations, sales, pushes")
        sold = {(numbers[i % len(numbers)].number, "vk") for i in sold_idx}
        for number, service in sold:
            aid = await conn.fetchval(
                "INSERT INTO operations (number, box, service, country, operator, rent, state,"
                " status, answered_by) VALUES ($1, 'a', $2, 'germany', 'x', false, 'finished',"
                " 3, 'a') RETURNING activation_id",
                number,
                service,
            )
            await conn.execute(
                "INSERT INTO sales (number, service, activation_id) VALUES ($1, $2, $3)",
                number,
                service,
                aid,
            )
        stores = {name: ClusterStore(dsn, name) for name in BOXES}
        for s in stores.values():
            await s.open()
        try:
            for name, s in stores.items():
                await s.heartbeat()
                await s.publish_numbers(
                    [entry(n.number, operator=n.operator) for n in numbers if name in n.boxes]
                )
            if dead is not None:
                await stores[dead].leave()
            if grouped:
                results = await _grouped(stores, requests)
            else:
                results = await asyncio.gather(
                    *(
                        stores[r.box].reserve(
                            country="germany", operator=r.operator, service=r.service, masks=r.masks
                        )
                        for r in requests
                    )
                )
        finally:
            for s in stores.values():
                await s.close()
        open_count = await conn.fetchval("SELECT count(*) FROM operations WHERE state = 'open'")
    finally:
        await conn.close()

    by_number = {n.number: n for n in numbers}
    taken = [op.number for op in results if op is not None]
    assert len(taken) == len(set(taken)), "a number was reserved twice"
    assert open_count == len(taken)
    ids = [op.activation_id for op in results if op is not None]
    assert len(ids) == len(set(ids))
    for req, op in zip(requests, results, strict=True):
        if op is not None:
            n = by_number[op.number]
            assert fits(n, req, dead=dead, sold=sold), (req, op)
            assert op.box in n.boxes - {dead}
            assert op.service == req.service
        else:
            left = [n for n in numbers if n.number not in taken]
            assert not [n for n in left if fits(n, req, dead=dead, sold=sold)], req


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    numbers=numbers_st,
    requests=requests_st,
    dead=st.sampled_from((None, *BOXES)),
    sold_idx=st.lists(st.integers(0, 100), max_size=5),
    grouped=st.booleans(),
)
def test_concurrent_reservations_never_collide(
    postgres: ThrowawayPostgres,
    numbers: list[Number],
    requests: list[Request],
    dead: str | None,
    sold_idx: list[int],
    grouped: bool,
) -> None:
    asyncio.run(_round(_database(postgres), numbers, requests, dead, sold_idx, grouped))


_MIGRATED: dict[int, str] = {}


def _database(pg: ThrowawayPostgres) -> str:
    """One migrated database for all examples (each example truncates it)."""
    if id(pg) not in _MIGRATED:

        async def make() -> str:
            dsn = await fresh_database(pg)
            async with ClusterStore(dsn, "a") as s:
                await s.migrate()
            return dsn

        _MIGRATED[id(pg)] = asyncio.run(make())
    return _MIGRATED[id(pg)]
