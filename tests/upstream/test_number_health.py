"""upstream.check_numbers: checkNumber against the real stand-in, one number per interval, each
at most once an hour, results on the ports (API and metrics), a floor after failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from muxd.metrics import HealthCollector
from muxd.ports import PortInfo, PortStatus
from muxd.status import port_status
from muxd.upstream.health import (
    FAILURE_WAIT,
    MIN_INTERVAL,
    RECHECK_AFTER,
    NumberHealth,
    health_of,
)
from muxd.upstream.v2 import V2Client
from muxd_sim.clock import FakeClock
from tests.upstream.conftest import KEY, NUMBERS, Upstream

INTERVAL = 10.0


class Stop(Exception):
    """Ends a run() after the sleeps the test wanted to see."""


def recording_sleep(clock: FakeClock, calls: int) -> Callable[[float], Awaitable[None]]:
    """The clock's sleep (each delay recorded, the clock moved by it at once); stops the loop
    after ``calls`` sleeps."""

    async def sleep(delay: float) -> None:
        await clock.sleep(delay)
        if len(clock.sleeps) >= calls:
            raise Stop

    return sleep


def ports() -> list[PortInfo]:
    return [
        PortInfo(name=f"port{i}", path=f"/dev/x{i}", status=PortStatus.READY, number=n)
        for i, n in enumerate(NUMBERS)
    ]


def checks(up: Upstream) -> list[str]:
    return [r.endpoint for r in up.stub.requests if r.endpoint == "checkNumber"]


async def test_one_number_per_interval_each_once_an_hour(upstream: Upstream) -> None:
    clock, fleet = FakeClock(0.0, jump=True), ports()
    upstream.stub.failed_operations[NUMBERS[1]] = 3  # the stand-in bans after 3 failures
    before = len(checks(upstream))
    health = NumberHealth(
        upstream.client,
        lambda: fleet,
        lambda: NUMBERS,
        interval=INTERVAL,
        clock=clock,
        sleep=recording_sleep(clock, 10),
    )
    with pytest.raises(Stop):
        await health.run()
    # 10 intervals: 3 numbers checked once each, then nothing is due for an hour.
    assert clock.sleeps == [INTERVAL] * 10
    assert len(checks(upstream)) - before == len(NUMBERS)
    assert health.next_number() is None
    clock.now = RECHECK_AFTER + 1
    assert health.next_number() == NUMBERS[0]  # the oldest check first

    banned = port_status(fleet[1], health.health_of(fleet[1].number))["health"]
    assert banned["banned"] is True
    assert banned["errors"] == 3
    assert port_status(fleet[0], health.health_of(fleet[0].number))["health"]["banned"] is False
    registry = CollectorRegistry()
    registry.register(HealthCollector(lambda: fleet, health.health_of))
    text = generate_latest(registry).decode()
    assert 'muxd_port_number_banned{port="port1"} 1.0' in text
    assert 'muxd_port_number_errors{port="port1"} 3.0' in text
    assert 'muxd_port_number_banned{port="port0"} 0.0' in text
    # Another SIM in the port: the old number's health is not shown for it.
    fleet[1].number = "+79009999999"
    assert port_status(fleet[1], health.health_of(fleet[1].number))["health"] is None
    assert 'port="port1"' not in generate_latest(registry).decode()


async def test_an_outage_costs_one_call_per_failure_wait() -> None:
    clock = FakeClock(0.0, jump=True)
    async with aiohttp.ClientSession() as http:
        # Nothing listens on port 9 of loopback: every call fails at once.
        client = V2Client(http, "http://127.0.0.1:9", KEY)
        health = NumberHealth(
            client,
            ports,
            lambda: NUMBERS,
            interval=0.0,  # below the floor: raised to MIN_INTERVAL
            clock=clock,
            sleep=recording_sleep(clock, 4),
        )
        assert health.interval == MIN_INTERVAL
        with pytest.raises(Stop):
            await health.run()
    assert clock.sleeps == [FAILURE_WAIT] * 4
    assert health.failing


def test_rent_finished_means_replace_the_sim() -> None:
    reply = {"status": 6, "status_text": "rent finished", "banned": False, "errors": 0}
    assert health_of(reply, "+79001110001", 0.0)["replace"] is True
    assert health_of({"status": 1}, "+79001110001", 0.0)["replace"] is False
