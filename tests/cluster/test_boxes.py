"""Several ``muxd run`` boxes on simulated modems sharing one PostgreSQL, driven by the
Onlinesim stand-in: v1 from any box (GET_NUMBER on one box, the SMS pushed by the box holding
the SIM, FINISH on a third, the sale credited to the holder's port), a box killed with -9,
PostgreSQL stopped."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from muxd.cluster.throwaway import ThrowawayPostgres
from muxd.upstream.v1.sales import SaleRow, sales

from .boxes import LEASE, WAIT, Box, call, cluster, live_counts, until
from .conftest import fresh_database

PORTS = 2


async def learned(box: Box) -> bool:
    """Whether ``box`` took in an operation opened elsewhere for one of its SIMs."""
    return 'muxd_cluster_operations_learned_total{via="notify"} 1.0' in await box.metrics()


def earned(text: str) -> dict[tuple[str, str], float]:
    """``muxd_v1_earned`` by (service, port): the series above 0."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "muxd_v1_earned_total" and sample.value:
                out[(sample.labels["service"], sample.labels["port"])] = sample.value
    return out


async def port_of(box: Box, number: str) -> str:
    """The name of ``box``'s port whose SIM has ``number`` (its ``/api/ports``)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{box.http_port}/api/ports") as resp,
    ):
        ports = (await resp.json())["ports"]
    return str(next(p["port"] for p in ports if p["number"] == number))


def _vk(services: dict[str, object]) -> int:
    country_list = services["countryList"]
    assert isinstance(country_list, list)
    return sum(int(c["operatorMap"]["any"]["vk"]) for c in country_list)


async def test_number_from_one_box_sms_pushed_by_its_holder_finished_on_a_third(
    tmp_path: Path, dsn: str
) -> None:
    async with cluster(tmp_path, dsn, ["a", "b", "c"], PORTS) as (boxes, driver, observer):
        a, b, c = boxes
        # Every cluster series is there from the start, at 0.
        text = await a.metrics()
        assert 'muxd_cluster_calls_total{call="finish",result="unavailable"} 0.0' in text
        assert 'muxd_cluster_reservations_total{result="abandoned"} 0.0' in text
        assert "muxd_cluster_lease_age_seconds" in text
        for box in boxes:  # any box answers for the whole fleet
            assert _vk(await call(driver, box, "get_services")) == 3 * PORTS

        # On box a, for a number whose SIM is on box b (a's and c's numbers excluded).
        answer = await call(
            driver, a, "get_number", "russia", "any", "vk", 10, [int(a.prefix), int(c.prefix)]
        )
        assert answer["status"] == "SUCCESS", answer
        number = "+" + str(answer["number"])
        assert number in b.numbers
        aid = answer["activationId"]
        assert _vk(await call(driver, c, "get_services")) == 3 * PORTS - 1

        # The SMS reaches b's SIM: b pushes it, once, to the operation opened on a.
        port = next(p for p in b.sim.ports if p.number == number)
        b.sim.inject(port.index, "VK", "VK: 482913 is your code")
        (push,) = await driver.wait_pushes(1, timeout=WAIT)
        assert push.text == "VK: 482913 is your code"
        assert push.phone == number.lstrip("+")

        # FINISH on c closes it; again on a: the same answer, nothing changes.
        assert (await call(driver, c, "finish", aid, 3))["status"] == "SUCCESS"
        assert (await call(driver, a, "finish", aid, 3))["status"] == "SUCCESS"
        assert await observer.open_operations(None) == []
        # Sold for vk: the fleet offers it for vk no more, for wa still.
        services = await call(driver, b, "get_services")
        assert _vk(services) == 3 * PORTS - 1
        # A later SMS to that number is not pushed to the finished operation.
        b.sim.inject(port.index, "VK", "VK: 111111 is your code")
        body = {"activationId": 10**12, "status": 3}
        _status, unknown = await call(driver, a, "call", "FINISH_ACTIVATION", body)
        assert unknown == {"status": "ERROR", "error": "NO_OPERATION"}
        assert len(driver.pushes) == 1
        assert driver.failed() == [], driver.report()
        text = await a.metrics()
        assert 'muxd_cluster_reservations_total{result="reserved"} 1.0' in text
        assert "muxd_cluster_postgresql_up 1.0" in text


async def test_a_sale_answered_by_one_box_is_credited_to_the_port_holding_the_sim(
    tmp_path: Path, dsn: str
) -> None:
    async with cluster(tmp_path, dsn, ["a", "b"], PORTS) as (boxes, driver, _observer):
        a, b = boxes
        credits: dict[tuple[str, str], float] = {}
        for amount in (15.0, 7.0):  # both of b's numbers, each sold through a
            answer = await call(driver, a, "get_number", "russia", "any", "vk", 10, [int(a.prefix)])
            assert answer["status"] == "SUCCESS", answer
            number = "+" + str(answer["number"])
            assert number in b.numbers
            aid = answer["activationId"]
            assert (await call(driver, a, "finish", aid, 3, amount))["status"] == "SUCCESS"
            credits[("vk", await port_of(b, number))] = amount

            async def credited() -> bool:
                return earned(await b.metrics()) == credits

            await until(credited, "b credits the sale to its port", WAIT, boxes)
            # Once in the fleet: a, which answered, credits nothing.
            assert earned(await a.metrics()) == {}
            # The same FINISH again, on a and on b: nothing more (the next sale, learned
            # after these, finds the first one credited once).
            assert (await call(driver, a, "finish", aid, 3, amount))["status"] == "SUCCESS"
            assert (await call(driver, b, "finish", aid, 3, amount))["status"] == "SUCCESS"
        assert earned(await b.metrics()) == credits
        assert 'muxd_v1_sales_total{service="vk"} 2.0' in await b.metrics()
        assert 'muxd_v1_sales_total{service="vk"} 0.0' in await a.metrics()
        # b's journal has the FINISH sums too (``muxd v1 sales`` on b).
        assert sales(tmp_path / "b" / "state", None, "service") == [SaleRow("vk", 2, 22.0)]
        assert driver.failed() == [], driver.report()


async def test_a_killed_box_leaves_the_counts_and_pushes_after_it_returns(
    tmp_path: Path, dsn: str
) -> None:
    async with cluster(tmp_path, dsn, ["a", "b"], PORTS) as (boxes, driver, observer):
        a, b = boxes
        answer = await call(driver, a, "get_number", "russia", "any", "vk", 10, [int(a.prefix)])
        assert answer["status"] == "SUCCESS", answer
        number = "+" + str(answer["number"])
        aid = answer["activationId"]
        assert number in b.numbers
        # b learns of it within a second (the notification).
        assert await until(lambda: learned(b), "b learns the operation", WAIT, boxes) < 1.0

        b.kill()
        await b.wait_dead()
        killed = time.monotonic()

        async def gone() -> bool:
            return _vk(await call(driver, a, "get_services")) == PORTS

        await until(gone, "b's numbers out of GET_SERVICES", LEASE + WAIT, boxes)
        assert time.monotonic() - killed < LEASE + 2.0  # within the lease (and a poll)
        assert set(await live_counts(observer)) == {"a"}
        # Its operation stays open; the SMS that reaches its SIM meanwhile waits on the SIM.
        assert [op.activation_id for op in await observer.open_operations("b")] == [aid]
        port = next(p for p in b.sim.ports if p.number == number)
        b.sim.inject(port.index, "VK", "VK: 775533 is your code")

        await b.start()
        (push,) = await driver.wait_pushes(1, timeout=WAIT)
        assert push.text == "VK: 775533 is your code"
        assert push.phone == number.lstrip("+")

        async def back() -> bool:
            return _vk(await call(driver, a, "get_services")) == 2 * PORTS - 1

        await until(back, "b's numbers back in GET_SERVICES", WAIT, boxes)
        assert driver.failed() == [], driver.report()


async def test_postgresql_stopped_no_numbers_at_once_nothing_lost(
    tmp_path: Path, private_postgres: ThrowawayPostgres
) -> None:
    pg = private_postgres
    dsn = await fresh_database(pg)
    async with cluster(tmp_path, dsn, ["a", "b"], PORTS) as (boxes, driver, _observer):
        a, b = boxes
        first = await call(driver, a, "get_number", "russia", "any", "vk", 10, [int(a.prefix)])
        assert first["status"] == "SUCCESS", first
        number = "+" + str(first["number"])
        port = next(p for p in b.sim.ports if p.number == number)
        await until(lambda: learned(b), "b learns the operation opened on a", WAIT, boxes)

        # Frozen: GET_NUMBER answers no numbers within the limit, every time.
        pg.pause()
        try:
            for _ in range(3):
                started = time.monotonic()
                answer = await call(driver, a, "get_number", "russia", "any", "wa", 10)
                assert answer == {"status": "NO_NUMBERS"}
                assert time.monotonic() - started < 10.0
        finally:
            pg.resume()

        # Stopped: the same at once; b still receives and pushes for what it knows.
        pg.stop()
        started = time.monotonic()
        assert await call(driver, a, "get_number", "russia", "any", "wa", 10) == {
            "status": "NO_NUMBERS"
        }
        assert time.monotonic() - started < 1.0
        assert (await call(driver, a, "get_services"))["countryList"] == []
        b.sim.inject(port.index, "VK", "VK: 246810 is your code")
        (push,) = await driver.wait_pushes(1, timeout=WAIT)
        assert push.phone == number.lstrip("+")

        # Back: numbers for sale again, new operations reach b (its listener reconnected).
        pg.start()

        async def sells() -> bool:
            got = await call(driver, a, "get_number", "russia", "any", "wa", 10, [int(a.prefix)])
            if got["status"] == "SUCCESS":
                sells.answer = got  # type: ignore[attr-defined]
                return True
            return False

        await until(sells, "GET_NUMBER after PostgreSQL is back", WAIT, boxes)
        second = sells.answer  # type: ignore[attr-defined]
        number2 = "+" + str(second["number"])
        port2 = next(p for p in b.sim.ports if p.number == number2)
        b.sim.inject(port2.index, "WA", "WhatsApp code 135-790")
        pushes = await driver.wait_pushes(2, timeout=WAIT)
        assert pushes[1].phone == number2.lstrip("+")
        assert pushes[1].text == "WhatsApp code 135-790"
        assert driver.failed() == [], driver.report()
