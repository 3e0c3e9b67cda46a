"""API v1 end to end over real pseudo-terminals: simulated modems -> fleet -> journal ->
V1Service <-> the Onlinesim stand-in (GET_SERVICES, GET_NUMBER, PUSH_SMS, FINISH_ACTIVATION).

The daemon's pieces are built here the way it builds them: a Fleet whose sink is the journal's
Intake, the journal, and the V1Service. The ports and the service run on an injected clock, so
the 15-minute reservation and the 10 s retry are crossed by advancing it; every wait is on an
event, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from muxd.fleet import Fleet
from muxd.numbers import load_numbers
from muxd.store import Journal
from muxd.store.sink import Intake
from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.pusher import PUSH_RETRY
from muxd.upstream.v1.server import RESERVATION
from muxd.upstream.v1.service import EXPIRY_CHECK
from muxd_sim.clock import FakeClock
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim_v1 import V1Driver

from .conftest import KEY, Recorder, fake_clock, make_config, running

PORTS = 6
FIRST = "+79001230000"
GRACE = 60.0
# Generous bounds for a loaded CI machine; the test waits on events, these only stop a hang.
READY_TIMEOUT = 30.0
PUSH_TIMEOUT = 20.0
LONG_TEXT = "Ваш код подтверждения: 482913. Никому его не сообщайте, даже сотрудникам. " * 2


def any_counts(answer: dict[str, object]) -> dict[str, int]:
    (russia,) = answer["countryList"]  # type: ignore[misc]
    assert russia["country"] == "russia"
    assert russia["operatorMap"]["mts"] == russia["operatorMap"]["any"]
    return dict(russia["operatorMap"]["any"])


async def all_sellable(fleet: Fleet, count: int) -> None:
    async with asyncio.timeout(READY_TIMEOUT):
        while True:
            fleet.changed.clear()
            if sum(1 for p in fleet.ports.values() if p.sellable) == count:
                return
            await fleet.changed.wait()


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[Fleet, Journal]]:
    """The fleet and journal of a daemon, its ports reading on the injected clock."""
    journal = await Journal.open(tmp_path / "state")
    fleet = Fleet(
        [str(tmp_path / "dev" / "port*")],
        baudrate=115200,
        sink=Intake(journal),
        wall=clock,
        numbers=load_numbers(str(tmp_path / "numbers.csv")),
        sweep_interval=60.0,
        rescan_interval=30.0,
    )
    task = asyncio.create_task(fleet.run())
    try:
        yield fleet, journal
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.close()


async def test_v1_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    clock = fake_clock()
    observer = Recorder()
    async with (
        ModemSimulator(PORTS, tmp_path / "dev", first_number=FIRST) as sim,
        V1Driver(KEY) as driver,
        aiohttp.ClientSession() as http,
    ):
        write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
        numbers = [int(p.number[1:]) for p in sim.ports]
        by_number = {int(p.number[1:]): p for p in sim.ports}

        def all_but(n: int) -> list[int | str]:
            return [m for m in numbers if m != n]

        async with daemon(tmp_path, clock) as (fleet, journal):
            cfg = make_config(driver, reservation_grace=GRACE, reservation_expiry=True)
            svc = V1Service(
                cfg,
                KEY,
                journal,
                lambda: fleet.ports.values(),
                http,
                clock=clock,
                sleep=clock.sleep,
                monotonic=clock.monotonic,
                observer=observer,
            )
            await all_sellable(fleet, PORTS)
            async with running(svc):
                driver.base_url = f"http://127.0.0.1:{svc.port}"
                full = {"vk": PORTS, "wa": PORTS, "tg": PORTS, "rent": PORTS}
                assert any_counts(await driver.get_services()) == full

                # wrong key: refused, nothing reserved
                await driver.get_number("russia", "any", "vk", key="not-the-key")
                assert svc.book.open_by_id == {}

                # GET_NUMBER with masks: only the unmasked number may come back
                target = numbers[3]
                got = await driver.get_number("russia", "mts", "vk", 15, all_but(target))
                assert (got["status"], got["number"]) == ("SUCCESS", target)
                vk_id = got["activationId"]
                masked = await driver.get_number("russia", "any", "wa", 15, all_but(target))
                assert masked["status"] == "NO_NUMBERS"  # the only unmasked one is busy

                # an SMS on that port is pushed once, with the right text (multipart, UCS-2)
                sim.inject(by_number[target].index, "VK", LONG_TEXT)
                (push,) = await driver.wait_pushes(1, PUSH_TIMEOUT)
                assert push.text == LONG_TEXT
                assert push.phone == str(target)
                assert push.body["phoneFrom"] == "VK"
                assert push.answer == "SUCCESS"

                # an SMS on a number without an operation is journaled, not pushed
                idle = numbers[0]
                sim.inject(by_number[idle].index, "Spam", "not for anyone")
                await observer.wait_for(lambda: "unassigned" in observer.pushes, PUSH_TIMEOUT)

                # FINISH 3: sold for vk (its count drops), free for the other services
                assert await driver.finish(vk_id, 3, 4.5) == {"status": "SUCCESS"}
                assert await driver.finish(vk_id, 3, 4.5) == {"status": "SUCCESS"}  # repeat
                counts = any_counts(await driver.get_services())
                assert counts == {**full, "vk": PORTS - 1}
                again = await driver.get_number("russia", "any", "vk", 15, all_but(target))
                assert again["status"] == "NO_NUMBERS"
                wa = await driver.get_number("russia", "any", "wa", 15, all_but(target))
                assert wa["number"] == target

                # a failed push is resent after 10 s (injected clock)
                driver.script(503)
                sim.inject(by_number[target].index, "WhatsApp", "WhatsApp code 111-222")
                await driver.wait_pushes(2, PUSH_TIMEOUT)
                await observer.wait_for(lambda: "retry" in observer.pushes, PUSH_TIMEOUT)
                await clock.advance(PUSH_RETRY)
                pushes = await driver.wait_pushes(3, PUSH_TIMEOUT)
                assert [p.answer for p in pushes[1:]] == ["HTTP 503", "SUCCESS"]
                assert pushes[1].body == pushes[2].body

                # FINISH 4: free again for the same service
                assert await driver.finish(wa["activationId"], 4) == {"status": "SUCCESS"}
                wa2 = await driver.get_number("russia", "any", "wa", 15, all_but(target))
                assert wa2["number"] == target
                assert wa2["activationId"] != wa["activationId"]

                # no FINISH for 15 minutes + grace: released, offered again
                await clock.advance(RESERVATION + GRACE + EXPIRY_CHECK + 1)
                await observer.wait_for(lambda: observer.open_counts[-1] == 0)
                assert any_counts(await driver.get_services()) == {**full, "vk": PORTS - 1}
                assert await driver.finish(wa2["activationId"], 4) == {"status": "SUCCESS"}

                stats = await journal.stats()
                assert stats["messages_delivered"] == 2
                assert stats["messages_no_operation"] == 1
                assert journal.backlog == 0
    # each SMS pushed exactly once after its SUCCESS; every check of the stand-in passed
    assert [p.text for p in driver.pushes].count(LONG_TEXT) == 1
    assert [c for c in driver.failed() if "wrong key" not in c.name] == [], driver.report()
    assert not [c for c in driver.failed() if "wrong key" in c.name], driver.report()
