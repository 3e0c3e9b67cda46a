"""Boxes under load: SMS keep arriving on every box's SIMs, v1 operations open on most of their
numbers, while a box is killed with -9 and started again, or while PostgreSQL is stopped for
a minute. Every SMS for an open operation is pushed once (the stand-in records the pushes,
muxd_sim's ledger holds them against what was injected), none for a number without one, and
GET_SERVICES counts what the live boxes offer, the killed box's numbers gone within the lease."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from muxd.cluster.throwaway import ThrowawayPostgres
from muxd_sim.ledger import Delivery, Ledger
from muxd_sim.onlinesim_v1 import V1Driver

from .boxes import LEASE, RATE, WAIT, Box, Load, call, cluster, tails, until
from .conftest import fresh_database

BOXES: Final = ["a", "b", "c"]
PORTS: Final = 4
# Per box, by port index: an operation before the load starts; one after the kill or the
# outage (its SIM gets no SMS until then: one that reached it shortly before the operation
# would be taken as the operation's, within the SMSC clock's tolerance); never one (its SMS
# are pushed to nobody).
FIRST: Final = (0, 1)
LATER: Final = 2
STRAY: Final = 3
# A killed box's SIMs keep what arrives until it is back: some 10 s at 3 to 4 SMS/s each.
CAPACITY: Final = 100
# Pushes stored before the kill or the stop: the load is in full flow.
PUSHES_BEFORE: Final = 60
# How long PostgreSQL stays stopped, the load going on.
OUTAGE: Final = 60.0
# Onlinesim cancels a GET_NUMBER not answered within 10 s; with PostgreSQL stopped muxd answers
# "no numbers" at once.
NO_NUMBERS_WITHIN: Final = 1.0
# Settling at the end: every SMS pushed, every SIM emptied, every pusher idle.
SETTLE_WAIT: Final = 60.0
RESENT: Final = "push: never again after SUCCESS"


def _key(push: Any) -> tuple[str, str, str]:
    return "+" + str(push.phone), str(push.body.get("phoneFrom")), str(push.text)


async def open_on(driver: V1Driver, boxes: Sequence[Box], number: str, via: Box) -> None:
    """GET_NUMBER on ``via`` for exactly ``number`` (every other number of the fleet masked)."""
    masks: list[int | str] = [int(n.lstrip("+")) for b in boxes for n in b.numbers if n != number]
    answer = await call(driver, via, "get_number", "russia", "any", "vk", 10, masks)
    assert answer["status"] == "SUCCESS", f"{answer}\n{tails(boxes)}"
    assert "+" + str(answer["number"]) == number


async def offered(driver: V1Driver, box: Box) -> dict[str, int]:
    """GET_SERVICES on ``box``: the fleet's free numbers per service (every country)."""
    services = await call(driver, box, "get_services")
    out: dict[str, int] = defaultdict(int)
    for country in services["countryList"]:
        for service, count in country["operatorMap"]["any"].items():
            out[service] += int(count)
    return dict(out)


def free(load: Load, live: Sequence[Box]) -> int:
    """What GET_SERVICES must count for each service: the live boxes' numbers in no operation
    (nothing was sold)."""
    return sum(1 for box in live for n in box.numbers if n not in load.in_operation)


async def counts_right(driver: V1Driver, box: Box, load: Load, live: Sequence[Box]) -> bool:
    return (await offered(driver, box)).get("vk") == free(load, live)


async def offers_all(box: Box) -> bool:
    """Whether ``box`` published the numbers of all its ports (False while it starts)."""
    try:
        return f"muxd_cluster_numbers_published {float(PORTS)}" in await box.metrics()
    except aiohttp.ClientError:
        return False


async def open_first(driver: V1Driver, boxes: Sequence[Box], load: Load) -> None:
    """The operations opened before the load: on each box's FIRST ports, each answered by
    another box; the LATER ports kept quiet."""
    for i, box in enumerate(boxes):
        via = boxes[(i + 1) % len(boxes)]
        for index in FIRST:
            number = box.sim.ports[index].number
            await open_on(driver, boxes, number, via)
            load.opened(number)
        load.quiet.add(box.sim.ports[LATER].number)


async def open_later(driver: V1Driver, boxes: Sequence[Box], load: Load) -> None:
    """One operation more per box (its LATER port), and the load reaches its SIM from now."""
    for i, box in enumerate(boxes):
        number = box.sim.ports[LATER].number
        await open_on(driver, boxes, number, boxes[(i + 2) % len(boxes)])
        load.opened(number)


async def pushed_to_later(driver: V1Driver, boxes: Sequence[Box], load: Load) -> None:
    """Until an SMS was pushed to each operation opened late."""
    later = {box.sim.ports[LATER].number for box in boxes}

    async def each() -> bool:
        return later <= {_key(p)[0] for p in driver.pushes}

    await until(each, "an SMS pushed to every operation opened late", WAIT, boxes)


async def settle(driver: V1Driver, boxes: Sequence[Box], load: Load) -> None:
    """Until every SMS for an operation was pushed, every SIM emptied (each SMS stored for
    good) and every box's pusher is idle (so a second copy would have been sent by now)."""
    expected = set(load.ledger.by_key)

    async def settled() -> bool:
        if not expected <= {_key(p) for p in driver.pushes}:
            return False
        if any(port.state.used for box in boxes for port in box.sim.ports):
            return False
        queued = [(await box.totals())["v1"]["pushes_queued"] for box in boxes]
        return queued == [0] * len(boxes)

    await until(settled, "every SMS pushed, SIMs empty, pushers idle", SETTLE_WAIT, boxes)


def verdict(driver: V1Driver, load: Load) -> Ledger:
    ledger = load.ledger
    for push in driver.pushes:
        number, sender, text = _key(push)
        ledger.add_delivery(Delivery(0.0, number, sender, text))
    assert ledger.lost() == [], f"{len(ledger.lost())} SMS never pushed: {ledger.lost()[:5]}"
    assert ledger.unknown() == [], f"pushed without an operation: {ledger.unknown()[:5]}"
    assert all(p.answer == "SUCCESS" for p in driver.pushes), driver.pushes[:5]
    return ledger


async def test_a_box_killed_under_load_pushes_every_sms_once_and_leaves_the_counts(
    tmp_path: Path, dsn: str
) -> None:
    async with cluster(tmp_path, dsn, BOXES, PORTS, capacity=CAPACITY) as (boxes, driver, _):
        a, b, c = boxes
        load = Load(boxes)
        await open_first(driver, boxes, load)
        for box in boxes:
            assert await counts_right(driver, box, load, boxes)

        async with load.running():
            await driver.wait_pushes(PUSHES_BEFORE, timeout=WAIT)
            assert await counts_right(driver, a, load, boxes)  # under load too

            c.kill()
            await c.wait_dead()
            killed = time.monotonic()
            await until(
                functools.partial(counts_right, driver, a, load, [a, b]),
                "c's numbers out of GET_SERVICES",
                LEASE + WAIT,
                boxes,
            )
            assert time.monotonic() - killed < LEASE + 2.0  # within the lease (and a poll)
            assert await counts_right(driver, b, load, [a, b])

            await c.start()
            # Back once its ports are (its lease alone makes the rows it left count again,
            # until its first publication, made before its ports are up, withdraws them).
            await until(functools.partial(offers_all, c), "c offers its numbers", WAIT, boxes)
            await until(
                functools.partial(counts_right, driver, a, load, boxes),
                "c's numbers back in GET_SERVICES",
                WAIT,
                boxes,
            )
            # New operations reach every box, the restarted one too (it listens again).
            await open_later(driver, boxes, load)
            await pushed_to_later(driver, boxes, load)
            assert await counts_right(driver, c, load, boxes)

        await settle(driver, boxes, load)
        ledger = verdict(driver, load)
        # A kill between Onlinesim's SUCCESS and the journal's record of it sends that PUSH_SMS
        # again on restart, the identical request (its smsId, which Onlinesim keeps once): at
        # most one per number being pushed on the killed box. Never a second smsId.
        ids: dict[tuple[str, str, str], set[Any]] = defaultdict(set)
        for push in driver.pushes:
            ids[_key(push)].add(push.sms_id)
        again = ledger.duplicates()
        assert all(len(ids[k]) == 1 for k in again), {k: ids[k] for k in again}
        assert sum(n - 1 for n in again.values()) <= PORTS, again
        resent = {f"smsId {next(iter(ids[k]))}" for k in again}
        failed = [f for f in driver.failed() if not (f.name == RESENT and f.detail in resent)]
        assert failed == [], driver.report()
        assert load.stray > 0
        assert len(ledger.sent) > PUSHES_BEFORE


# The outage alone lasts OUTAGE (60 s), past the suite's per-test limit.
@pytest.mark.timeout(OUTAGE + 120)
async def test_postgresql_stopped_a_minute_under_load_pushes_every_sms_once(
    tmp_path: Path, private_postgres: ThrowawayPostgres
) -> None:
    pg = private_postgres
    dsn = await fresh_database(pg)
    async with cluster(tmp_path, dsn, BOXES, PORTS, capacity=CAPACITY) as (boxes, driver, _):
        a = boxes[0]
        load = Load(boxes)
        await open_first(driver, boxes, load)

        async with load.running():
            await driver.wait_pushes(PUSHES_BEFORE, timeout=WAIT)
            assert await counts_right(driver, a, load, boxes)

            pg.stop()
            stopped = time.monotonic()
            pushed = len(driver.pushes)
            # No numbers at once, on every box; nothing offered.
            for box in boxes:
                started = time.monotonic()
                answer = await call(driver, box, "get_number", "russia", "any", "wa", 10)
                assert answer == {"status": "NO_NUMBERS"}
                assert time.monotonic() - started < NO_NUMBERS_WITHIN
                assert (await call(driver, box, "get_services"))["countryList"] == []
            # The SMS of the operations every box knows keep being pushed meanwhile.
            await driver.wait_pushes(pushed + PUSHES_BEFORE, timeout=WAIT)
            await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))  # the outage
            pg.start()

            for box in boxes:
                await until(
                    functools.partial(counts_right, driver, box, load, boxes),
                    "GET_SERVICES counts again after PostgreSQL is back",
                    WAIT,
                    boxes,
                )
            # New operations reach their boxes (each listens again).
            await open_later(driver, boxes, load)
            await pushed_to_later(driver, boxes, load)
            assert await counts_right(driver, a, load, boxes)

        await settle(driver, boxes, load)
        ledger = verdict(driver, load)
        assert ledger.duplicates() == {}
        assert driver.failed() == [], driver.report()
        assert load.stray > 0
        assert len(ledger.sent) > OUTAGE * RATE / 2
