"""A local close (``muxd v1 operations close``, another process on the journal file) reaches the
running v1 service through the journal's change counter, on the injected clock; the sales
report reads the journal."""

from __future__ import annotations

from muxd.upstream.v1 import sales
from muxd.upstream.v1.service import RELOAD_CHECK

from .conftest import RUSSIA, Env, ports_for


async def test_a_local_close_frees_the_number_in_the_running_service(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    state_dir = env.tmp / "state"
    async with env.serving() as svc:
        rent = await env.driver.get_number("russia", service="rent", sum=400, rent=True)
        vk = await env.driver.get_number("russia", service="vk", sum=12)
        assert await svc.reload_closed() == []  # nothing changed elsewhere
        outcome = sales.close_operation(state_dir, rent["activationId"], 1, env.clock())
        assert outcome == "closed"
        assert sales.close_operation(state_dir, rent["activationId"], 1, env.clock()) == (
            "not_open"
        )
        assert sales.close_operation(state_dir, 12345, 1, env.clock()) == "unknown"
        assert rent["activationId"] in svc.book.open_by_id  # not seen before the next check
        await env.clock.advance(RELOAD_CHECK)
        await env.observer.wait_for(lambda: rent["activationId"] not in svc.book.open_by_id)
        assert vk["activationId"] in svc.book.open_by_id  # the other one stays open
        # The freed number is offered again.
        again = await env.driver.get_number("russia", service="rent", sum=400, rent=True)
        assert again["status"] == "SUCCESS"
        # Closing with status 3 marks (number, service) sold, as a FINISH would.
        sales.close_operation(state_dir, vk["activationId"], 3, env.clock())
        await env.clock.advance(RELOAD_CHECK)
        number = "+" + str(vk["number"])
        await env.observer.wait_for(lambda: svc.book.is_sold(number, "vk"))
        assert (await env.driver.finish(vk["activationId"], 3)) == {"status": "SUCCESS"}


async def test_sales_report_groups_successful_operations(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:3])
    state_dir = env.tmp / "state"
    async with env.serving():
        a = await env.driver.get_number("russia", service="vk", sum=12)
        b = await env.driver.get_number("russia", service="wa", sum=7)
        c = await env.driver.get_number("russia", service="rent", sum=400, rent=True)
        await env.driver.finish(a["activationId"], 3)  # no FINISH sum: GET_NUMBER's 12
        await env.driver.finish(b["activationId"], 4)  # not a success
        await env.driver.finish(c["activationId"], 3, 870, rent=True)  # rent: the total
    rows = sales.sales(state_dir, None, "service")
    assert [(r.key, r.sales, r.earned) for r in rows] == [("rent", 1, 870.0), ("vk", 1, 12.0)]
    # Too recent for nothing, too old for everything.
    assert sales.sales(state_dir, env.clock() + 1, "service") == []
    (day,) = sales.sales(state_dir, None, "day")
    assert (day.sales, day.earned) == (2, 882.0)
    # No SMS journaled for these numbers: their port is unknown to the journal.
    (port,) = sales.sales(state_dir, None, "port")
    assert port.key == sales.NO_PORT
