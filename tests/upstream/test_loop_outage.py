"""Every loop that talks to Onlinesim, through a one-hour outage on an injected clock.

Per loop: 15 minutes of 503, 15 of dropped connections, 15 of refused connections, 15 of DNS
failure. The hour must cost a few dozen connection attempts (counted where they are made: the
server for 503 and drops, the resolver for every attempt) and a few dozen log lines (caplog),
and afterwards everything drains: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from muxd.ports import PortStatus
from muxd.store import Journal
from muxd.upstream.backoff import Policy, RetryLoop, parse_retry_after
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Observer
from muxd.upstream.v1.operations import Reservation, reserve
from muxd.upstream.v1.pusher import PUSH_RETRY, Pusher
from muxd.upstream.v2 import NumberEntry, V2Client
from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim import Onlinesim, serve
from tests.upstream.conftest import KEY
from tests.upstream.outage import (
    HOST,
    Phase,
    PhaseResolver,
    PushEndpoint,
    one_hour_outage,
    session,
)
from tests.upstream.test_publisher import ready_port
from tests.v1.conftest import receive

# What one simulated hour of outage may cost one loop, at most.
MAX_ATTEMPTS = 60
MAX_LOG_LINES = 30
HEARTBEAT = 240.0
SLOW_ANSWER = 20.0


@dataclass
class V2Env:
    stub: Onlinesim
    resolver: PhaseResolver
    client: V2Client
    journal: Journal
    clock: FakeClock
    http: aiohttp.ClientSession
    url: str


@pytest.fixture
async def v2(tmp_path: Path) -> AsyncIterator[V2Env]:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    resolver = PhaseResolver(served.port)
    journal = await Journal.open(tmp_path)
    try:
        async with session(resolver) as http:
            url = f"http://{HOST}:{served.port}"
            client = V2Client(http, url, KEY)
            yield V2Env(stub, resolver, client, journal, FakeClock(), http, url)
    finally:
        await journal.close()
        await resolver.close()
        await served.runner.cleanup()


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def muxd_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        # muxd's own lines, not the stand-in's (the server side)
        if r.name.startswith("muxd.")
        and not r.name.startswith("muxd_sim")
        and r.levelno >= logging.INFO
    ]


def attempts(resolver: PhaseResolver) -> int:
    return sum(resolver.attempts[p] for p in ("503", "reset", "refused", "dns"))


async def publisher_through_an_outage(
    env: V2Env, caplog: pytest.LogCaptureFixture, *, incremental: bool
) -> NumbersPublisher:
    stub, clock = env.stub, env.clock
    ports = {str(i): ready_port(i) for i in range(1, 4)}
    changed = asyncio.Event()
    publisher = NumbersPublisher(
        env.client,
        lambda: ports.values(),
        changed,
        env.journal,
        interval=HEARTBEAT,
        rent=False,
        incremental=incremental,
        startup_grace=0.0,
        clock=clock,
        sleep=clock.sleep,
    )

    def listed() -> set[str]:
        return set(stub.numbers)

    def wanted() -> set[str]:
        return {p.number for p in ports.values() if p.sellable and p.number}

    def change(phase: Phase) -> None:
        # Ports come and go while the upstream is out: both changes must reach it after.
        if phase == "reset":
            ports["9"] = ready_port(9)
            changed.set()
        if phase == "dns":
            ports["1"].status = PortStatus.BACKOFF
            changed.set()

    async with running(publisher.run()):
        await clock.run_until(lambda: listed() == wanted())
        before = len(stub.requests)
        caplog.clear()
        await one_hour_outage(clock, env.resolver, stub=stub, during=change)
        server = len(stub.requests) - before
        lines = muxd_lines(caplog)
        total = attempts(env.resolver)
        loops = len(publisher.loops)  # incremental: checkWork and the numbers, each bounded
        assert total <= MAX_ATTEMPTS * loops, env.resolver.attempts
        assert server <= MAX_ATTEMPTS * loops
        assert len(lines) <= MAX_LOG_LINES * loops, lines
        assert all(not loop.ok for loop in publisher.loops)
        await clock.run_until(
            lambda: listed() == wanted() and all(loop.ok for loop in publisher.loops)
        )
    assert "+79000000009" in listed()
    assert "+79000000001" not in listed()
    assert any("reachable again" in line for line in muxd_lines(caplog))
    return publisher


async def test_publisher_list_mode_survives_an_hour_long_outage_quietly(
    v2: V2Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    await publisher_through_an_outage(v2, caplog, incremental=False)


async def test_publisher_incremental_mode_survives_an_hour_long_outage_quietly(
    v2: V2Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    await publisher_through_an_outage(v2, caplog, incremental=True)


class SlowClient(V2Client):
    """The real client, against an upstream whose sendNumbersOnline answers take 20 s."""

    clock: FakeClock
    started: list[float]

    async def send_numbers_online(self, numbers: list[NumberEntry]) -> dict[str, int | None]:
        self.started.append(self.clock.now)
        ids = await super().send_numbers_online(numbers)
        self.clock.advance_to(self.clock.mono + SLOW_ANSWER)
        return ids


async def test_heartbeat_every_interval_from_the_start_of_the_previous_one(v2: V2Env) -> None:
    ports = {"1": ready_port(1)}
    clock = v2.clock
    client = SlowClient(v2.http, v2.url, KEY)
    client.clock = clock
    client.started = []
    publisher = NumbersPublisher(
        client,
        lambda: ports.values(),
        asyncio.Event(),
        v2.journal,
        interval=HEARTBEAT,
        rent=False,
        startup_grace=0.0,
        clock=clock,
        sleep=clock.sleep,
    )
    start = clock.now
    async with running(publisher.run()):
        await clock.run_until(lambda: len(client.started) >= 4)
    # Every 240 s from the start of the previous one, though each answer took 20 s.
    assert [t - start for t in client.started[:4]] == [0.0, HEARTBEAT, 2 * HEARTBEAT, 3 * HEARTBEAT]


async def test_a_failing_check_work_does_not_hold_back_number_changes(v2: V2Env) -> None:
    stub, clock = v2.stub, v2.clock
    ports = {"1": ready_port(1)}
    changed = asyncio.Event()
    publisher = NumbersPublisher(
        v2.client,
        lambda: ports.values(),
        changed,
        v2.journal,
        interval=HEARTBEAT,
        rent=False,
        incremental=True,
        startup_grace=0.0,
        clock=clock,
        sleep=clock.sleep,
    )
    stub.fail_next("checkWork", 404, count=10**6)  # a checkWork path the upstream lacks
    async with running(publisher.run()):
        await clock.run_until(lambda: "+79000000001" in stub.numbers)
        ports["2"] = ready_port(2)
        changed.set()
        await clock.run_until(lambda: "+79000000002" in stub.numbers)
        ports["1"].status = PortStatus.BACKOFF
        changed.set()
        await clock.run_until(lambda: "+79000000001" not in stub.numbers)
        assert not publisher.heartbeat_loop.ok
        assert publisher.numbers_loop.ok


async def test_shipper_survives_an_hour_long_outage_quietly(
    v2: V2Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    stub, clock, journal = v2.stub, v2.clock, v2.journal
    numbers = ("+79001110001", "+79001110002")
    # The stand-in takes SMS only for listed numbers.
    await v2.client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in numbers])
    ship = Shipper(
        journal,
        v2.client,
        batch_max=10,
        batch_delay=0.0,
        sleep=clock.sleep,
        clock=clock,
        timer=clock.monotonic,
    )
    sent: list[str] = []

    async def sms(text: str) -> None:
        number = numbers[len(sent) % 2]
        await receive(journal, number, "Bank", text, clock.now)
        sent.append(text)

    async def arrive(phase: Phase) -> None:
        await sms(f"during {phase}")

    async with running(ship.run()):
        await sms("before")
        await stub.wait_until(lambda: len(stub.messages) == 1, timeout=10)
        before = len(stub.requests)
        caplog.clear()
        await one_hour_outage(clock, v2.resolver, stub=stub, during=arrive)
        server = len(stub.requests) - before
        lines = muxd_lines(caplog)
        assert attempts(v2.resolver) <= MAX_ATTEMPTS, v2.resolver.attempts
        assert server <= MAX_ATTEMPTS
        assert len(lines) <= MAX_LOG_LINES, lines
        assert not ship.loop.ok
        await clock.run_until(lambda: len(stub.messages) == len(sent))
    assert sorted(m.message for m in stub.messages) == sorted(sent)
    assert stub.duplicates == 0
    assert ship.loop.ok
    assert await journal.pending(100) == []


# Numbers in an open rent operation each, for the PUSH_SMS pusher's outage tests.
RENT_NUMBERS = ("+79002220001", "+79002220002", "+79002220003")


async def open_rent_operations(journal: Journal, now: float) -> None:
    """One open rent operation per number of RENT_NUMBERS, opened a minute before ``now``."""
    for number in RENT_NUMBERS:
        op = await reserve(
            journal, Reservation(number, "rent", "russia", "mts", None, True, now - 60, None)
        )
        assert op is not None


async def test_pusher_survives_an_hour_long_outage_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    clock = FakeClock()
    push = PushEndpoint()
    await push.start()
    resolver = PhaseResolver(push.port)
    journal = await Journal.open(tmp_path)
    numbers = RENT_NUMBERS
    try:
        await open_rent_operations(journal, clock.now)
        async with session(resolver) as http:
            url = f"http://{HOST}:{push.port}/v1/PUSH_SMS"
            pusher = Pusher(
                journal,
                http,
                api_key=KEY,
                url=url,
                rent_url=url,
                filters={},
                gzip_body=False,
                clock=clock,
                sleep=clock.sleep,
                observer=V1Observer(),
            )
            ids: list[int] = []

            async def sms(k: int) -> None:
                ids.append(await receive(journal, numbers[k % 3], "Bank", f"sms {k}", clock.now))

            async def arrive(_phase: Phase) -> None:
                for _ in range(3):  # every number has an SMS waiting in every phase
                    await sms(len(ids))

            def idle() -> bool:
                return pusher.sending == 0

            async with running(pusher.run()):
                for k in range(3):
                    await sms(k)
                await clock.run_until(lambda: len(push.accepted) == 3, idle)
                caplog.clear()
                await one_hour_outage(clock, resolver, push=push, idle=idle, during=arrive)
                lines = muxd_lines(caplog)
                server = push.requests["503"] + push.requests["reset"]
                assert attempts(resolver) <= MAX_ATTEMPTS, resolver.attempts
                assert server <= MAX_ATTEMPTS
                assert len(lines) <= MAX_LOG_LINES, lines
                assert not pusher.loop.ok
                await clock.run_until(lambda: len(push.accepted) == len(ids), idle)
            assert sorted(push.accepted) == sorted(ids)  # each once: nothing lost or doubled
            assert pusher.loop.ok
    finally:
        await journal.close()
        await resolver.close()
        await push.close()


async def test_no_attempt_sooner_than_the_floor_nor_than_retry_after() -> None:
    clock = FakeClock(0.0)
    loop = RetryLoop("t", Policy(first=0.01, cap=0.02, floor=1.0), clock=clock)
    assert loop.failed(0.0, "boom") == 1.0  # instant failures still wait the floor
    clock.now = 10.0
    assert loop.failed(10.0, "boom", retry_after=120.0) == 120.0
    clock.now = 500.0
    assert loop.failed(500.0, "boom", retry_after=10**6) == loop.policy.retry_after_cap
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:02:00 GMT", now=60.0) == 60.0
    assert parse_retry_after("soon") is None
    # Backoff runs from the start of the attempt: a 100 s attempt leaves no extra wait.
    slow = RetryLoop("s", Policy(first=50.0, cap=50.0, jitter=0.0, floor=1.0), clock=clock)
    clock.now = 1100.0
    assert slow.failed(1000.0, "slow") == 1.0


async def test_a_wall_clock_step_back_does_not_delay_a_push_retry(tmp_path: Path) -> None:
    """The pusher's retries run on the monotonic timer: a wall clock set back an hour (NTP on a
    box without a real-time clock) after a failed push does not hold the retry for an hour."""
    timer = FakeClock()
    wall = [timer.now]
    push = PushEndpoint()
    await push.start()
    resolver = PhaseResolver(push.port)
    journal = await Journal.open(tmp_path)
    number = "+79002220009"
    try:
        op = await reserve(
            journal, Reservation(number, "rent", "russia", "mts", None, True, wall[0] - 60, None)
        )
        assert op is not None
        async with session(resolver) as http:
            url = f"http://{HOST}:{push.port}/v1/PUSH_SMS"
            pusher = Pusher(
                journal, http, api_key=KEY, url=url, rent_url=url, filters={},
                gzip_body=False, clock=lambda: wall[0], timer=timer.monotonic, sleep=timer.sleep,
                observer=V1Observer(),
            )  # fmt: skip

            def idle() -> bool:
                return pusher.sending == 0

            push.phase = "503"
            async with running(pusher.run()):
                sms_id = await receive(journal, number, "Bank", "code 1234", wall[0])
                await timer.run_until(lambda: push.requests["503"] == 1, idle)
                wall[0] -= 3600.0  # the wall clock steps back an hour
                push.phase = "up"
                started = timer.now
                await timer.run_until(lambda: len(push.accepted) == 1, idle)
                assert timer.now - started <= 2 * PUSH_RETRY
            assert push.accepted == [sms_id]
    finally:
        await journal.close()
        await resolver.close()
        await push.close()
